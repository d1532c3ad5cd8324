//! [`Republisher`]: the far end of a bridge as a producer. It turns each
//! received payload into a frame of a local bus, keeping the camera bus's
//! sequence numbers and capture times, so local consumers run unchanged.

use std::io::Read;

use framebus_producer::{Captured, Producer, ProducerConfig, ProducerError, SourceError};
use shm_layout::PixelFormat;

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
        /// a change of geometry or pixel format, or a new producer on the
        /// camera host.
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

/// What the local bus is made for: a change of any of it re-creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Source {
    /// Instance id of the camera bus.
    instance: u64,
    width: u32,
    height: u32,
    format: PixelFormat,
    significant_bits: u8,
}

impl Source {
    fn of(h: &FrameHeader) -> Self {
        Self {
            instance: h.source_instance,
            width: h.width,
            height: h.height,
            format: h.format,
            significant_bits: h.significant_bits,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{} {} ({}-bit) from {:016x}",
            self.width, self.height, self.format, self.significant_bits, self.instance
        )
    }
}

/// The producer side of `framebus bridge in`.
pub struct Republisher {
    config: ProducerConfig,
    producer: Option<Producer>,
    /// What the current bus was made for.
    source: Option<Source>,
    scratch: Vec<u8>,
    /// The first frame of a new camera bus, decoded (rows packed, `width *
    /// bytes per pixel` apart) before the local bus is re-created for it,
    /// so a bad payload from a peer cannot tear down the local bus.
    staged: Vec<u8>,
    counters: RepublishCounters,
}

impl Republisher {
    /// A republisher that will create the bus described by `config` when
    /// the first frame arrives (its geometry, pixel format and significant
    /// bits come with the frame: `config.format` and
    /// `config.significant_bits` are replaced by the frame's). Fails at
    /// once if a live producer already owns the bus.
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
        let source = Source::of(&header);
        // A row's bytes: a checked header's width (<= 16384) times at most
        // 3 bytes per pixel.
        let row_bytes = header.row_bytes() as usize;
        // The local bus exists exactly when `self.source` is set.
        let new_bus = self.source != Some(source);
        if new_bus {
            // Check the whole frame before anything is torn down: only a
            // frame that decodes re-creates the bus.
            self.staged.clear();
            self.staged.resize(row_bytes * header.height as usize, 0);
            if let Err(e) = read_pixels(
                &header,
                data,
                &mut self.scratch,
                &mut self.staged,
                row_bytes,
            ) {
                self.counters.invalid += 1;
                return Ok(Outcome::Invalid(e));
            }
            if let Some(old) = self.source {
                tracing::info!(
                    bus = %self.config.bus,
                    %old,
                    new = %source,
                    "the camera bus changed (geometry, pixel format or producer): re-creating the local bus"
                );
            }
            // Consumers see end-of-file and re-attach to the new bus.
            self.producer = None;
            self.source = None;
            let config = self
                .config
                .clone()
                .with_format(header.format, header.significant_bits);
            match Producer::create(config, header.width, header.height) {
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
                // Decoded (and checked) above, before the bus was made in
                // the frame's format: its rows hold `row_bytes`.
                for (row, src) in slot
                    .data()
                    .chunks_mut(stride)
                    .zip(staged_rows.chunks(row_bytes))
                {
                    row[..row_bytes].copy_from_slice(src);
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
        payload_in(instance, seq, w, h, c, PixelFormat::Gray8, 8)
    }

    fn payload_in(
        instance: u64,
        seq: u64,
        w: u32,
        h: u32,
        c: Compression,
        format: PixelFormat,
        bits: u8,
    ) -> Vec<u8> {
        let row = (w * format.bytes_per_pixel()) as usize;
        let mut px = vec![0u8; row * h as usize];
        Pattern::with_format(w, format, bits).fill(seq, &mut px, row, h);
        let meta = FrameMeta {
            source_instance: instance,
            seq,
            capture_ns: 1234 + seq,
            publish_ns: 0,
            width: w,
            height: h,
            format,
            significant_bits: bits,
        };
        let mut out = Vec::new();
        encode_frame(&meta, &px, row, c, &mut Vec::new(), &mut out);
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
        let (seq, capture_ns, width, _, _, ok) = take_in(consumer);
        (seq, capture_ns, width, ok)
    }

    /// The next frame: seq, capture time, width, format, significant bits
    /// and whether it is the pattern of its seq in its bus's format.
    fn take_in(consumer: &mut Consumer) -> (u64, u64, u32, PixelFormat, u8, bool) {
        let f = consumer
            .next_frame(Some(Duration::from_secs(5)))
            .expect("next_frame")
            .expect("a frame within 5 s");
        let ok = Pattern::with_format(f.width(), f.format(), f.significant_bits())
            .verify(f.seq(), f.pixels(), f.stride() as usize, f.height())
            .is_ok();
        (
            f.seq(),
            f.capture_ns(),
            f.width(),
            f.format(),
            f.significant_bits(),
            ok,
        )
    }

    /// The far bus takes each frame's pixel format and significant bits;
    /// a change of either (same geometry, same camera instance) re-creates
    /// it, and its consumers re-attach and read the new format. A frame
    /// whose pixels do not decode does not touch the bus.
    #[test]
    fn the_local_bus_follows_the_format_and_significant_bits() {
        let name = bus("fmt");
        // The config's own format is replaced by the frame's.
        let config = ProducerConfig::new(name.clone()).with_format(PixelFormat::Rgb8, 8);
        let mut r = Republisher::new(config).unwrap();
        let p = |seq, format, bits, c| payload_in(7, seq, 161, 9, c, format, bits);
        let out = r
            .handle_slice(&p(1, PixelFormat::Gray16, 12, Compression::Lz4))
            .unwrap();
        assert_published(&out, 1, true);
        let layout = r.producer().unwrap().layout();
        assert_eq!(
            (layout.format, layout.significant_bits),
            (PixelFormat::Gray16, 12)
        );
        let mut c = Consumer::attach(ConsumerConfig::new(name.clone())).unwrap();
        assert_eq!(
            take_in(&mut c),
            (1, 1235, 161, PixelFormat::Gray16, 12, true)
        );
        let out = r
            .handle_slice(&p(2, PixelFormat::Gray16, 12, Compression::None))
            .unwrap();
        assert_published(&out, 2, false);
        assert_eq!(
            take_in(&mut c),
            (2, 1236, 161, PixelFormat::Gray16, 12, true)
        );
        // A corrupt frame in another format: dropped, the bus stays.
        let instance = r.producer().unwrap().instance_id();
        let mut corrupt = p(3, PixelFormat::Bgr8, 8, Compression::Lz4);
        let n = corrupt.len();
        corrupt.truncate(n - 3);
        corrupt[56..64].copy_from_slice(&((n - 3 - HEADER_LEN) as u64).to_le_bytes());
        let out = r.handle_slice(&corrupt).unwrap();
        assert!(
            matches!(out, Outcome::Invalid(PayloadError::Decompress { .. })),
            "{out:?}"
        );
        assert_eq!(r.producer().unwrap().instance_id(), instance);
        // Other significant bits, then other formats: a new bus each time.
        let mut instances = vec![instance];
        for (seq, format, bits, c2) in [
            (4, PixelFormat::Gray16, 10, Compression::None),
            (5, PixelFormat::Bgr8, 8, Compression::Lz4),
            (6, PixelFormat::Rgb8, 8, Compression::None),
            (7, PixelFormat::Gray8, 8, Compression::Lz4),
        ] {
            let out = r.handle_slice(&p(seq, format, bits, c2)).unwrap();
            assert_published(&out, seq, true);
            let id = r.producer().unwrap().instance_id();
            assert!(
                !instances.contains(&id),
                "{format}/{bits}: the bus was kept"
            );
            instances.push(id);
            assert_eq!(
                take_in(&mut c),
                (seq, 1234 + seq, 161, format, bits, true),
                "{format}/{bits}"
            );
        }
        assert_eq!(c.reattached(), 4);
        let counters = r.counters();
        assert_eq!(
            (counters.published, counters.invalid, counters.buses_created),
            (6, 1, 5)
        );
        drop(c);
        r.shutdown();
        assert!(!std::path::Path::new(&format!("/dev/shm/framebus.{name}")).exists());
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
