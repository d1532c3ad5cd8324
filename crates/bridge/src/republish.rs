//! [`Republisher`]: the far end of a bridge as a producer. It turns each
//! received payload into a frame of a local bus, keeping the camera bus's
//! sequence numbers and capture times, so local consumers run unchanged.

use std::io::Read;

use framebus_producer::{Captured, Producer, ProducerConfig, ProducerError, SourceError};

use crate::error::BridgeError;
use crate::payload::{read_pixels, FrameHeader, PayloadError, HEADER_LEN};

/// What became of one payload.
#[derive(Debug)]
pub enum Outcome {
    /// Published on the local bus with this sequence number.
    Published {
        /// The frame's sequence number (the camera bus's).
        seq: u64,
        /// Whether the local bus was (re-)created for it: the first frame,
        /// a change of geometry, or a new producer on the camera host.
        new_bus: bool,
    },
    /// Not newer than the last frame published: dropped.
    Stale {
        /// Its sequence number.
        seq: u64,
    },
    /// A payload that is not a valid frame: dropped.
    Invalid(PayloadError),
    /// A valid frame whose geometry no local bus can hold (/dev/shm is too
    /// small, or the layout is impossible): dropped.
    NoBus(String),
}

/// Counters of a [`Republisher`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepublishCounters {
    /// Frames published on the local bus.
    pub published: u64,
    /// Frames that never arrived (gaps in the sequence numbers).
    pub lost: u64,
    /// Frames not newer than the last one.
    pub stale: u64,
    /// Invalid payloads.
    pub invalid: u64,
    /// Local buses created.
    pub buses_created: u64,
    /// The last sequence number published on the current local bus (0
    /// until its first frame).
    pub last_seq: u64,
}

/// The producer side of `framebus bridge in`.
pub struct Republisher {
    config: ProducerConfig,
    producer: Option<Producer>,
    /// (instance id of the camera bus, width, height) of the current bus.
    source: Option<(u64, u32, u32)>,
    scratch: Vec<u8>,
    /// The first frame of a new camera bus, decoded (rows `width` apart)
    /// before the local bus is re-created for it, so a bad payload from a
    /// peer cannot tear down the local bus.
    staged: Vec<u8>,
    counters: RepublishCounters,
}

impl Republisher {
    /// A republisher that will create the bus described by `config` when
    /// the first frame arrives (its geometry comes with the frame). Fails
    /// at once if a live producer already owns the bus.
    pub fn new(config: ProducerConfig) -> Result<Self, BridgeError> {
        if let Ok(s) = framebus_consumer::inspect(&config.bus) {
            if s.producer_alive {
                return Err(BridgeError::BusBusy {
                    bus: config.bus.to_string(),
                    pid: s.producer_pid,
                });
            }
        }
        Ok(Self {
            config,
            producer: None,
            source: None,
            scratch: Vec::new(),
            staged: Vec::new(),
            counters: RepublishCounters::default(),
        })
    }

    /// The local bus's producer, once the first frame has created it.
    pub fn producer(&self) -> Option<&Producer> {
        self.producer.as_ref()
    }

    /// Counters so far.
    pub fn counters(&self) -> RepublishCounters {
        self.counters
    }

    /// Connects new local consumers and refreshes the heartbeat: call it
    /// while no frame arrives.
    pub fn housekeeping(&mut self) {
        if let Some(p) = &mut self.producer {
            p.housekeeping();
        }
    }

    /// Handles a payload held in one slice.
    pub fn handle_slice(&mut self, payload: &[u8]) -> Result<Outcome, BridgeError> {
        let mut data = payload.get(HEADER_LEN..).unwrap_or(&[]);
        self.handle(payload, payload.len(), &mut data)
    }

    /// Handles one payload of `total_len` bytes: `head` holds its first
    /// bytes (at least the header, or all of a shorter payload) and `data`
    /// reads what follows the header. A valid frame is published on the
    /// local bus (created or re-created first if needed); anything else is
    /// dropped, counted, and reported in the [`Outcome`]. Errors are only
    /// what should stop the bridge (another producer took the bus, an OS
    /// failure).
    pub fn handle(
        &mut self,
        head: &[u8],
        total_len: usize,
        data: &mut impl Read,
    ) -> Result<Outcome, BridgeError> {
        let header = match FrameHeader::decode(head, total_len) {
            Ok(h) => h,
            Err(e) => {
                self.counters.invalid += 1;
                return Ok(Outcome::Invalid(e));
            }
        };
        let source = (header.source_instance, header.width, header.height);
        // The local bus exists exactly when `self.source` is set.
        let new_bus = self.source != Some(source);
        if new_bus {
            // Check the whole frame before anything is torn down: only a
            // frame that decodes re-creates the bus.
            let width = header.width as usize;
            self.staged.clear();
            self.staged.resize(width * header.height as usize, 0);
            if let Err(e) = read_pixels(&header, data, &mut self.scratch, &mut self.staged, width) {
                self.counters.invalid += 1;
                return Ok(Outcome::Invalid(e));
            }
            if let Some((instance, w, h)) = self.source {
                tracing::info!(
                    bus = %self.config.bus,
                    old = %format!("{w}x{h} from {instance:016x}"),
                    new = %format!("{}x{} from {:016x}", header.width, header.height, header.source_instance),
                    "the camera bus changed (geometry or producer): re-creating the local bus"
                );
            }
            // Consumers see end-of-file and re-attach to the new bus.
            self.producer = None;
            self.source = None;
            match Producer::create(self.config.clone(), header.width, header.height) {
                Ok(p) => {
                    self.producer = Some(p);
                    self.source = Some(source);
                    // A new bus instance: its consumers accept any numbers.
                    self.counters.last_seq = 0;
                    self.counters.buses_created += 1;
                }
                Err(e @ (ProducerError::Layout(_) | ProducerError::NoSpace { .. })) => {
                    self.counters.invalid += 1;
                    return Ok(Outcome::NoBus(e.to_string()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let last_seq = self.counters.last_seq;
        if header.seq <= last_seq {
            self.counters.stale += 1;
            return Ok(Outcome::Stale { seq: header.seq });
        }
        if last_seq != 0 {
            self.counters.lost += header.seq - last_seq - 1;
        }
        let Some(producer) = self.producer.as_mut() else {
            // Unreachable: created above.
            return Ok(Outcome::NoBus("no local bus".into()));
        };
        producer.skip_to_seq(header.seq);
        let scratch = &mut self.scratch;
        let staged_rows = &self.staged;
        let mut failure = None;
        let published = producer.publish(|_, slot| {
            let stride = slot.stride() as usize;
            if new_bus {
                // Decoded (and checked) above, before the bus was made.
                let width = header.width as usize;
                for (row, src) in slot
                    .data()
                    .chunks_mut(stride)
                    .zip(staged_rows.chunks(width))
                {
                    row[..width].copy_from_slice(src);
                }
                return Ok(Captured {
                    capture_ns: header.capture_ns,
                });
            }
            match read_pixels(&header, data, scratch, slot.data(), stride) {
                Ok(()) => Ok(Captured {
                    capture_ns: header.capture_ns,
                }),
                Err(e) => {
                    let msg = e.to_string();
                    failure = Some(e);
                    Err(SourceError::Failed(msg))
                }
            }
        });
        match published {
            Ok(seq) => {
                debug_assert_eq!(seq, header.seq);
                self.counters.published += 1;
                self.counters.last_seq = seq;
                Ok(Outcome::Published { seq, new_bus })
            }
            // The payload's pixels were bad (the fill failed, nothing was
            // published); any other failure is the bus's own.
            Err(e) => match failure {
                Some(bad) => {
                    self.counters.invalid += 1;
                    Ok(Outcome::Invalid(bad))
                }
                None => Err(e.into()),
            },
        }
    }

    /// Removes the local bus (consumers see end-of-file). Also done on drop.
    pub fn shutdown(&mut self) {
        self.producer = None;
        self.source = None;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use framebus_consumer::{Consumer, ConsumerConfig};
    use shm_layout::pattern::Pattern;
    use shm_layout::BusName;

    use super::*;
    use crate::payload::{encode_frame, Compression, FrameMeta};

    fn bus(name: &str) -> BusName {
        BusName::new(&format!("bridge-unit-{name}-{}", std::process::id())).unwrap()
    }

    fn payload(instance: u64, seq: u64, w: u32, h: u32, c: Compression) -> Vec<u8> {
        let mut px = vec![0u8; (w * h) as usize];
        Pattern::new(w).fill(seq, &mut px, w as usize, h);
        let meta = FrameMeta {
            source_instance: instance,
            seq,
            capture_ns: 1234 + seq,
            publish_ns: 0,
            width: w,
            height: h,
        };
        let mut out = Vec::new();
        encode_frame(&meta, &px, w as usize, c, &mut Vec::new(), &mut out);
        out
    }

    /// `out` is `Published` with this seq and new-bus flag.
    #[track_caller]
    fn assert_published(out: &Outcome, seq: u64, new_bus: bool) {
        assert!(
            matches!(out, Outcome::Published { seq: s, new_bus: n } if *s == seq && *n == new_bus),
            "expected Published {{ seq: {seq}, new_bus: {new_bus} }}, got {out:?}"
        );
    }

    fn take(consumer: &mut Consumer) -> (u64, u64, u32, bool) {
        let f = consumer
            .next_frame(Some(Duration::from_secs(5)))
            .expect("next_frame")
            .expect("a frame within 5 s");
        let ok = Pattern::new(f.width())
            .verify(f.seq(), f.pixels(), f.stride() as usize, f.height())
            .is_ok();
        (f.seq(), f.capture_ns(), f.width(), ok)
    }

    #[test]
    fn republishes_with_the_camera_numbers_and_recreates_on_changes() {
        let name = bus("seq");
        let mut r = Republisher::new(ProducerConfig::new(name.clone())).unwrap();
        assert!(r.producer().is_none());
        // The first frame creates the bus.
        let out = r
            .handle_slice(&payload(7, 100, 96, 8, Compression::Lz4))
            .unwrap();
        assert_published(&out, 100, true);
        let first_instance = r.producer().unwrap().instance_id();
        let mut c = Consumer::attach(ConsumerConfig::new(name.clone())).unwrap();
        assert_eq!(take(&mut c), (100, 1334, 96, true));
        // Gaps keep the numbers and are counted; old frames are dropped.
        let out = r
            .handle_slice(&payload(7, 105, 96, 8, Compression::None))
            .unwrap();
        assert_published(&out, 105, false);
        assert_eq!(take(&mut c), (105, 1339, 96, true));
        let out = r
            .handle_slice(&payload(7, 104, 96, 8, Compression::None))
            .unwrap();
        assert!(matches!(out, Outcome::Stale { seq: 104 }), "{out:?}");
        // Garbage is dropped and counted; the bus is untouched.
        let out = r.handle_slice(b"not a frame").unwrap();
        assert!(matches!(
            out,
            Outcome::Invalid(PayloadError::Truncated { len: 11 })
        ));
        let mut corrupt = payload(7, 106, 96, 8, Compression::Lz4);
        let n = corrupt.len();
        corrupt.truncate(n - 3);
        corrupt[56..64].copy_from_slice(&((n - 3 - HEADER_LEN) as u64).to_le_bytes());
        let out = r.handle_slice(&corrupt).unwrap();
        assert!(
            matches!(out, Outcome::Invalid(PayloadError::Decompress { .. })),
            "{out:?}"
        );
        // The same from a new instance, or a new geometry: still dropped
        // before the bus is touched (it would otherwise be re-created).
        for (instance, w, h) in [(9, 96, 8), (7, 64, 4)] {
            let mut corrupt = payload(instance, 106, w, h, Compression::Lz4);
            let n = corrupt.len();
            corrupt.truncate(n - 3);
            corrupt[56..64].copy_from_slice(&((n - 3 - HEADER_LEN) as u64).to_le_bytes());
            let out = r.handle_slice(&corrupt).unwrap();
            assert!(
                matches!(out, Outcome::Invalid(PayloadError::Decompress { .. })),
                "{out:?}"
            );
            assert_eq!(r.producer().unwrap().instance_id(), first_instance);
        }
        // A new geometry re-creates the bus (new instance id): the consumer
        // re-attaches by itself.
        let out = r
            .handle_slice(&payload(7, 107, 64, 4, Compression::None))
            .unwrap();
        assert_published(&out, 107, true);
        let second_instance = r.producer().unwrap().instance_id();
        assert_ne!(first_instance, second_instance);
        assert_eq!(take(&mut c), (107, 1341, 64, true));
        assert_eq!(c.reattached(), 1);
        // A restarted camera producer (new instance, numbers from 1 again)
        // re-creates it too, so consumers accept the lower numbers.
        let out = r
            .handle_slice(&payload(8, 1, 64, 4, Compression::None))
            .unwrap();
        assert_published(&out, 1, true);
        assert_eq!(take(&mut c), (1, 1235, 64, true));
        assert_eq!(
            r.counters(),
            RepublishCounters {
                published: 4,
                lost: 4,
                stale: 1,
                invalid: 4,
                buses_created: 3,
                last_seq: 1,
            }
        );
        drop(c);
        r.shutdown();
        assert!(!std::path::Path::new(&format!("/dev/shm/framebus.{name}")).exists());
    }

    #[test]
    fn refuses_a_bus_that_is_already_produced() {
        let name = bus("busy");
        let _p = Producer::create(ProducerConfig::new(name.clone()), 32, 4).unwrap();
        match Republisher::new(ProducerConfig::new(name.clone())) {
            Err(BridgeError::BusBusy { pid, .. }) => assert_eq!(pid, std::process::id()),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a produced bus was accepted"),
        }
    }
}
