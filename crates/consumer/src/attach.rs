//! An [`Attachment`]: one registration of this consumer on one instance of a
//! bus — the validated mappings, the claimed consumer entry, and the trigger
//! FIFO. Frames keep it alive through an `Arc`, so the mapping outlives every
//! pixel slice handed out, even across a producer restart.

use std::sync::atomic::AtomicU32;

use shm_layout::entry::{self, HoldTokens};
use shm_layout::header::HeaderFixed;
use shm_layout::naming::fifo_file_name;
use shm_layout::pin::consumer_bit;
use shm_layout::{view, BusName, ControlView, Layout, Owner, ProducerState};

use crate::error::ConsumerError;
use crate::sys::{self, FifoError, ForkGuard, TokenId, TriggerPipe};
use crate::trust::Trust;

/// Geometry and identity of the bus instance a consumer is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusInfo {
    /// The validated layout (width, height, stride, slots...).
    pub layout: Layout,
    /// The producer's instance id.
    pub instance_id: u64,
    /// The producer's pid.
    pub producer_pid: u32,
    /// This consumer's entry index (its pin bit).
    pub entry: u32,
    /// The entry's claim generation (its FIFO is
    /// `consumer-<entry>-<generation>.fifo`).
    pub generation: u32,
}

/// How many entries a registration tries when something is in the way of
/// its FIFO (each new claim has a new generation, hence a new FIFO name).
const FIFO_ATTEMPTS: u32 = 4;

/// Consumer-entry tokens taken and let go through this consumer's own open
/// of the bus object (see `framebus_platform::token`).
pub(crate) struct EntryTokens<'a>(pub(crate) sys::BusRef<'a>);

impl HoldTokens for EntryTokens<'_> {
    fn try_hold(&self, index: u32) -> bool {
        sys::try_hold_token(self.0, TokenId::Consumer(index)).unwrap_or_else(|e| {
            tracing::debug!(entry = index, "cannot take the entry's liveness token: {e}");
            false
        })
    }

    fn release(&self, index: u32) {
        if let Err(e) = sys::release_token(self.0, TokenId::Consumer(index)) {
            tracing::debug!(
                entry = index,
                "cannot let the entry's liveness token go: {e}"
            );
        }
    }
}

/// Options of one registration.
#[derive(Debug, Clone)]
pub(crate) struct Registration<'a> {
    pub(crate) bus: &'a BusName,
    pub(crate) name: &'a str,
    pub(crate) max_fps_milli: u32,
    /// An instance whose producer this consumer already saw go: never
    /// registered on again (it waits for the next producer instead).
    pub(crate) gone_instance: Option<u64>,
    /// Who may own the bus.
    pub(crate) trust: &'a Trust,
}

pub(crate) struct Attachment {
    // Field order is drop order: the pipe (FIFO removed) and the entry
    // release happen in Drop; the mappings go last.
    pub(crate) pipe: TriggerPipe,
    pub(crate) control: ControlView,
    pub(crate) header: HeaderFixed,
    pub(crate) index: u32,
    pub(crate) bit: u64,
    pub(crate) owner: Owner,
    /// Frames pinned through this attachment and not yet dropped.
    pub(crate) held: AtomicU32,
    pixels: sys::GuardedMap,
    control_map: sys::GuardedMap,
    /// This consumer's own open of the bus object: it holds the entry's
    /// liveness token (and the mappings keep the open alive too).
    fd: sys::BusHandle,
    /// In a forked child, the registration, pins and FIFO are the parent's.
    fork: ForkGuard,
}

// SAFETY: the raw mappings are only read through `ControlView` (atomics) and
// `pixels` (read-only memory); nothing in an Attachment is tied to a thread.
unsafe impl Send for Attachment {}
// SAFETY: as above; shared access is to atomics and immutable bytes.
unsafe impl Sync for Attachment {}

/// Reads and validates a bus's header: maps it, checks everything, maps
/// the control part read-write and the pixels read-only.
pub(crate) struct MappedBus {
    /// The object's owner (trusted: checked at open).
    pub(crate) owner: u32,
    pub(crate) control: ControlView,
    /// Where the producer wants consumers' FIFOs (from the header page).
    pub(crate) trigger_dir: std::path::PathBuf,
    pub(crate) header: HeaderFixed,
    pub(crate) pixels: sys::GuardedMap,
    pub(crate) control_map: sys::GuardedMap,
    pub(crate) fd: sys::BusHandle,
}

impl MappedBus {
    /// Opens `bus` for a process that trusts only its own user and the
    /// owners in `FRAMEBUS_TRUST_OWNERS`.
    pub(crate) fn open(bus: &BusName) -> Result<Self, ConsumerError> {
        Self::open_trusting(bus, &Trust::new(&[])?)
    }

    /// [`MappedBus::open`], refused with [`ConsumerError::NotRunning`] when
    /// no producer runs it (for the readers that register nothing: the BGR
    /// copy and the unpinned frame copy).
    pub(crate) fn open_running(bus: &BusName) -> Result<Self, ConsumerError> {
        let mapped = Self::open(bus)?;
        if !mapped.producer_running() {
            return Err(ConsumerError::NotRunning {
                bus: bus.to_string(),
                pid: mapped.header.producer_pid,
            });
        }
        Ok(mapped)
    }

    /// Opens `bus` if `trust` accepts its owner and mode (checked with
    /// `fstat` on the open object, before anything is mapped).
    pub(crate) fn open_trusting(bus: &BusName, trust: &Trust) -> Result<Self, ConsumerError> {
        let name = bus.shm_name();
        let layout_err = |source| ConsumerError::Layout {
            bus: bus.to_string(),
            source,
        };
        let Some((fd, size)) = sys::open_shm(&name)
            .map_err(ConsumerError::os(format!("cannot open /dev/shm{name}")))?
        else {
            return Err(ConsumerError::BusNotFound {
                bus: bus.to_string(),
            });
        };
        let owner = trust.check_object(bus.as_str(), &fd)?;
        let min = u64::from(shm_layout::header::HEADER_SIZE);
        if size < min {
            return Err(layout_err(shm_layout::LayoutError::TooSmall { size, min }));
        }
        let head = sys::map_rw(&fd, size.min(shm_layout::header::PAGE))
            .map_err(ConsumerError::os("cannot map the bus header"))?;
        // SAFETY: `head` maps min(size, 4096) >= 256 readable bytes at a page
        // boundary and lives until `drop(head)` below.
        let (header, layout, trigger_dir) =
            unsafe { view::read_bus(head.as_ptr(), head.len(), size) }.map_err(layout_err)?;
        drop(head);
        let control_map = sys::map_rw(&fd, layout.control_len())
            .map_err(ConsumerError::os("cannot map the bus tables"))?;
        let pixels = sys::map_ro(
            &fd,
            layout.bgr_offset,
            layout.total_size - layout.bgr_offset,
        )
        .map_err(ConsumerError::os("cannot map the bus pixels"))?;
        // SAFETY: `control_map` is control_len() read-write bytes of the object
        // whose header validated to `layout` (the static header never changes
        // after the magic is published), owned by the returned struct for as
        // long as `control` is used.
        let control = unsafe { ControlView::new(control_map.as_ptr(), layout) };
        Ok(Self {
            owner,
            control,
            trigger_dir: trigger_dir.into(),
            header,
            pixels,
            control_map,
            fd,
        })
    }

    /// Whether the producer is running: state Running and its liveness
    /// token held (the kernel's word, whatever pid namespace it runs in).
    pub(crate) fn producer_running(&self) -> bool {
        self.control.dynamic().state() == Some(ProducerState::Running)
            && producer_token_held(&self.fd)
    }

    /// Whether the object was truncated under the mappings (they now show
    /// zero pages): nothing read from them since can be trusted.
    pub(crate) fn truncated(&self) -> bool {
        self.control_map.broken() || self.pixels.broken()
    }

    /// Gray slot `slot`'s bytes (`slot < slot_count`, validated layout).
    pub(crate) fn gray_slot_ptr(pixels: &sys::GuardedMap, layout: &Layout, slot: u32) -> *const u8 {
        assert!(slot < layout.slot_count);
        let offset = (layout.gray_slot_offset(slot) - layout.bgr_offset) as usize;
        // SAFETY: validation put every gray slot inside [bgr_offset,
        // total_size), which is exactly what `pixels` maps.
        unsafe { pixels.as_ptr().add(offset) }
    }
}

impl Attachment {
    /// Validates the bus, claims a free consumer entry, creates the trigger
    /// FIFO and marks the entry Ready for the producer to connect.
    pub(crate) fn register(reg: &Registration<'_>) -> Result<Self, ConsumerError> {
        let bus = reg.bus;
        let mapped = MappedBus::open_trusting(bus, reg.trust)?;
        let not_running = || ConsumerError::NotRunning {
            bus: bus.to_string(),
            pid: mapped.header.producer_pid,
        };
        if reg.gone_instance == Some(mapped.header.instance_id) || !mapped.producer_running() {
            return Err(not_running());
        }
        let dir = mapped.trigger_dir.clone();
        if !shm_layout::naming::is_trigger_dir_for(&dir, bus) {
            return Err(ConsumerError::Layout {
                bus: bus.to_string(),
                source: shm_layout::LayoutError::TriggerDir {
                    why: "it is not a framebus trigger directory for this bus",
                },
            });
        }
        reg.trust.check_trigger_dir(&dir, mapped.owner)?;
        let shared = sys::check_trigger_dir(&dir).map_err(|e| ConsumerError::Os {
            what: format!("trigger directory {}", dir.display()),
            source: e,
        })?;
        let tokens = EntryTokens(sys::bus_ref(&mapped.fd));
        let consumers = mapped.control.consumers();
        let pid = sys::my_pid();
        let mut occupied = None;
        for _ in 0..FIFO_ATTEMPTS {
            // Token first, then the claim (shm_layout::entry).
            let (index, owner) =
                entry::claim(consumers, pid, &tokens).ok_or_else(|| ConsumerError::BusFull {
                    bus: bus.to_string(),
                    max: mapped.header.max_consumers,
                })?;
            let entry = &consumers[index as usize];
            entry.reset_figures();
            entry.set_name(reg.name);
            entry
                .max_fps_milli
                .store(reg.max_fps_milli, shm_layout::sync::Ordering::Relaxed);
            let path = dir.join(fifo_file_name(index as usize, owner.generation()));
            let pipe = match TriggerPipe::create(&path, if shared { 0o620 } else { 0o600 }) {
                Ok(p) => p,
                Err(e) => {
                    // Free the entry and let its token go; a new claim has a
                    // new generation, hence another FIFO name.
                    entry::leave(entry, index, owner, &tokens);
                    match e {
                        FifoError::Occupied(what) => {
                            tracing::warn!(path = %path.display(), "{what} is in the way of a trigger FIFO; trying another entry");
                            occupied = Some(ConsumerError::FifoPathOccupied { path, what });
                            continue;
                        }
                        FifoError::Io(source) => {
                            return Err(ConsumerError::Os {
                                what: format!("cannot create FIFO {}", path.display()),
                                source,
                            })
                        }
                    }
                }
            };
            // Release (in the CAS): the figures, name and FIFO are in place
            // before the producer (Acquire in its CAS) sees Ready.
            let Some(ready) = entry::mark_ready(entry, owner) else {
                // The producer took the entry over meanwhile (it found our
                // token free: we cannot be here, unless it was forged).
                drop(pipe);
                entry::leave(entry, index, owner, &tokens);
                return Err(not_running());
            };
            tracing::debug!(bus = %bus, entry = index, fifo = %pipe.path().display(), "registered");
            return Ok(Self {
                pipe,
                control: mapped.control,
                header: mapped.header,
                index,
                bit: consumer_bit(index),
                owner: ready,
                held: AtomicU32::new(0),
                pixels: mapped.pixels,
                control_map: mapped.control_map,
                fd: mapped.fd,
                fork: ForkGuard::new(),
            });
        }
        Err(occupied.unwrap_or_else(not_running))
    }

    pub(crate) fn bus_info(&self) -> BusInfo {
        BusInfo {
            layout: *self.layout(),
            instance_id: self.header.instance_id,
            producer_pid: self.header.producer_pid,
            entry: self.index,
            generation: self.owner.generation(),
        }
    }

    /// Whether this is the process that registered (not a forked child,
    /// whose drops must not release the parent's pins or registration).
    pub(crate) fn in_owner_process(&self) -> bool {
        !self.fork.in_child()
    }

    pub(crate) fn layout(&self) -> &Layout {
        self.control.layout()
    }

    pub(crate) fn gray_slot_ptr(&self, slot: u32) -> *const u8 {
        MappedBus::gray_slot_ptr(&self.pixels, self.layout(), slot)
    }

    /// Our entry's current state as the table says (the producer may have
    /// connected it, or reclaimed it).
    pub(crate) fn entry_owner(&self) -> Owner {
        self.control.consumers()[self.index as usize].owner()
    }

    /// Whether the entry is still ours: same pid and generation, in a
    /// state the producer leaves to its owner. After an eviction the
    /// producer keeps the entry Reclaiming until this consumer lets its
    /// token go.
    pub(crate) fn registered(&self) -> bool {
        entry::still_registered(&self.control.consumers()[self.index as usize], self.owner)
    }

    /// Whether the bus object was truncated under this attachment: a fault
    /// was repaired in one of its mappings (two atomic loads), or, when
    /// `check_size`, the object is now shorter than its layout (`fstat`).
    pub(crate) fn truncated(&self, check_size: bool) -> bool {
        self.control_map.broken()
            || self.pixels.broken()
            || (check_size
                && sys::object_size(&self.fd).is_ok_and(|size| size < self.layout().total_size))
    }

    /// Whether the producer still runs: state Running and its token held.
    pub(crate) fn producer_running(&self) -> bool {
        self.control.dynamic().state() == Some(ProducerState::Running)
            && producer_token_held(&self.fd)
    }
}

/// Whether the producer's liveness token on the bus object is held. If the
/// kernel cannot tell, the producer is taken for alive (the pipe's end of
/// file still tells its death).
fn producer_token_held(fd: &sys::BusHandle) -> bool {
    sys::token_held(fd, TokenId::Producer).unwrap_or_else(|e| {
        tracing::debug!("cannot test the producer's liveness token: {e}");
        true
    })
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // Every frame of this attachment is gone (they hold the Arc), so no
        // pin of ours remains. Leave: free the entry if it is still ours
        // and the producer is not reclaiming it, then let the token go (the
        // producer frees a reclaiming entry once it sees the token free);
        // then remove our FIFO (its name is ours alone: per generation).
        if !self.in_owner_process() {
            // A forked child: the registration, token and FIFO are the
            // parent's; the child's descriptors just close.
            return;
        }
        let entry = &self.control.consumers()[self.index as usize];
        entry::leave(
            entry,
            self.index,
            self.owner,
            &EntryTokens(sys::bus_ref(&self.fd)),
        );
        self.pipe.unlink();
    }
}
