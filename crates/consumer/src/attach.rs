//! An [`Attachment`]: one registration of this consumer on one instance of a
//! bus — the validated mappings, the claimed consumer entry, and the trigger
//! FIFO. Frames keep it alive through an `Arc`, so the mapping outlives every
//! pixel slice handed out, even across a producer restart.

use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicU32;

use shm_layout::header::HeaderFixed;
use shm_layout::naming::fifo_file_name;
use shm_layout::pin::consumer_bit;
use shm_layout::sync::Ordering;
use shm_layout::{view, BusName, ConsumerState, ControlView, Layout, Owner, ProducerState};

use crate::error::ConsumerError;
use crate::sys::{self, FifoError, TriggerPipe};

/// Options of one registration.
#[derive(Debug, Clone)]
pub(crate) struct Registration<'a> {
    pub(crate) bus: &'a BusName,
    pub(crate) name: &'a str,
    pub(crate) max_fps_milli: u32,
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
    pixels: memmap2::MmapRaw,
    _control_map: memmap2::MmapRaw,
    _fd: OwnedFd,
}

// SAFETY: the raw mappings are only read through `ControlView` (atomics) and
// `pixels` (read-only memory); nothing in an Attachment is tied to a thread.
unsafe impl Send for Attachment {}
// SAFETY: as above; shared access is to atomics and immutable bytes.
unsafe impl Sync for Attachment {}

/// Reads and validates a bus's header: maps it, checks everything, maps
/// the control part read-write and the pixels read-only.
pub(crate) struct MappedBus {
    pub(crate) control: ControlView,
    /// Where the producer wants consumers' FIFOs (from the header page).
    pub(crate) trigger_dir: std::path::PathBuf,
    pub(crate) header: HeaderFixed,
    pub(crate) pixels: memmap2::MmapRaw,
    pub(crate) control_map: memmap2::MmapRaw,
    pub(crate) fd: OwnedFd,
}

impl MappedBus {
    pub(crate) fn open(bus: &BusName) -> Result<Self, ConsumerError> {
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
            control,
            trigger_dir: trigger_dir.into(),
            header,
            pixels,
            control_map,
            fd,
        })
    }

    /// Whether the producer is running: state Running and its pid alive.
    pub(crate) fn producer_running(&self) -> bool {
        self.control.dynamic().state() == Some(ProducerState::Running)
            && sys::pid_alive(self.header.producer_pid)
    }

    /// Gray slot `slot`'s bytes (`slot < slot_count`, validated layout).
    pub(crate) fn gray_slot_ptr(
        pixels: &memmap2::MmapRaw,
        layout: &Layout,
        slot: u32,
    ) -> *const u8 {
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
        let mapped = MappedBus::open(bus)?;
        if !mapped.producer_running() {
            return Err(ConsumerError::NotRunning {
                bus: bus.to_string(),
                pid: mapped.header.producer_pid,
            });
        }
        let pid = sys::my_pid();
        let (index, owner) =
            claim_entry(&mapped.control, pid).ok_or_else(|| ConsumerError::BusFull {
                bus: bus.to_string(),
                max: mapped.header.max_consumers,
            })?;
        let entry = &mapped.control.consumers()[index as usize];
        // A CAS from our claim: if the producer reclaimed the entry
        // meanwhile, it is the producer's to free.
        let free_entry = || {
            let _ = entry.owner.compare_exchange(
                owner.0,
                owner.freed().0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        };
        entry.reset_figures();
        entry.set_name(reg.name);
        entry
            .max_fps_milli
            .store(reg.max_fps_milli, Ordering::Relaxed);
        let dir = mapped.trigger_dir.clone();
        if !shm_layout::naming::is_trigger_dir_for(&dir, bus) {
            free_entry();
            return Err(ConsumerError::Layout {
                bus: bus.to_string(),
                source: shm_layout::LayoutError::TriggerDir {
                    why: "it is not a framebus trigger directory for this bus",
                },
            });
        }
        let shared = match sys::check_trigger_dir(&dir) {
            Ok(shared) => shared,
            Err(e) => {
                free_entry();
                let what = format!("trigger directory {}", dir.display());
                return Err(ConsumerError::Os { what, source: e });
            }
        };
        let path = dir.join(fifo_file_name(index as usize));
        let pipe = match TriggerPipe::create(&path, if shared { 0o620 } else { 0o600 }) {
            Ok(p) => p,
            Err(e) => {
                free_entry();
                return Err(match e {
                    FifoError::Occupied(what) => ConsumerError::FifoPathOccupied { path, what },
                    FifoError::Io(source) => ConsumerError::Os {
                        what: format!("cannot create FIFO {}", path.display()),
                        source,
                    },
                });
            }
        };
        let ready = owner.with_state(ConsumerState::Ready);
        // Release: the figures, name and FIFO are in place before the
        // producer (Acquire in its CAS) sees Ready.
        if entry
            .owner
            .compare_exchange(owner.0, ready.0, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            // The producer reclaimed the entry meanwhile (it thought us dead).
            drop(pipe);
            return Err(ConsumerError::NotRunning {
                bus: bus.to_string(),
                pid: mapped.header.producer_pid,
            });
        }
        tracing::debug!(bus = %bus, entry = index, fifo = %pipe.path().display(), "registered");
        Ok(Self {
            pipe,
            control: mapped.control,
            header: mapped.header,
            index,
            bit: consumer_bit(index),
            owner: ready,
            held: AtomicU32::new(0),
            pixels: mapped.pixels,
            _control_map: mapped.control_map,
            _fd: mapped.fd,
        })
    }

    pub(crate) fn bus_info(&self) -> crate::consumer::BusInfo {
        crate::consumer::BusInfo {
            layout: *self.layout(),
            instance_id: self.header.instance_id,
            producer_pid: self.header.producer_pid,
            entry: self.index,
        }
    }

    /// Whether this is the process that registered (not a forked child,
    /// whose drops must not release the parent's pins or registration).
    pub(crate) fn in_owner_process(&self) -> bool {
        sys::my_pid() == self.owner.pid()
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

    /// Whether the registration still stands and the producer runs.
    /// Whether the entry is still ours: same pid and generation, in a
    /// state the producer leaves to its owner. After an eviction the
    /// producer keeps the entry Reclaiming until this process exits.
    pub(crate) fn registered(&self) -> bool {
        let own = self.entry_owner();
        own.pid() == self.owner.pid()
            && own.generation() == self.owner.generation()
            && matches!(
                own.state(),
                Some(ConsumerState::Ready | ConsumerState::Connected)
            )
    }

    /// Whether the registration still stands and the producer runs.
    pub(crate) fn alive(&self) -> bool {
        self.registered()
            && self.control.dynamic().state() == Some(ProducerState::Running)
            && sys::pid_alive(self.header.producer_pid)
    }
}

/// Claims the first free entry: CAS from its free word (keeping the
/// generation) to Claimed by `pid` with the generation bumped.
fn claim_entry(control: &ControlView, pid: u32) -> Option<(u32, Owner)> {
    for (i, entry) in control.consumers().iter().enumerate() {
        let cur = entry.owner();
        if cur.state() != Some(ConsumerState::Free) {
            continue;
        }
        let claimed = Owner::new(
            pid,
            cur.generation().wrapping_add(1),
            ConsumerState::Claimed,
        );
        // AcqRel: Acquire sees the producer's reclaim (bits cleared) before
        // we use the entry's bit; Release orders nothing yet but is harmless.
        if entry
            .owner
            .compare_exchange(cur.0, claimed.0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return Some((i as u32, claimed));
        }
    }
    None
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // Every frame of this attachment is gone (they hold the Arc), so no
        // pin of ours remains. Leave in order: free the entry if it is still
        // ours and the producer is not reclaiming it (then the producer
        // frees it), keeping its generation; then remove our FIFO if it is
        // still the one we created (a new owner of the entry has its own
        // inode there). Freeing first means the producer never sees a Ready
        // entry without its FIFO, which it would take for a dead consumer.
        // Release: our releases happen-before a new claimant's use.
        if !self.in_owner_process() {
            // A forked child: the registration and FIFO are the parent's.
            self.pipe.disown();
            return;
        }
        let entry = &self.control.consumers()[self.index as usize];
        let cur = entry.owner();
        let ours = cur.pid() == self.owner.pid() && cur.generation() == self.owner.generation();
        let leavable = matches!(
            cur.state(),
            Some(ConsumerState::Claimed | ConsumerState::Ready | ConsumerState::Connected)
        );
        if ours && leavable {
            let _ = entry.owner.compare_exchange(
                cur.0,
                cur.freed().0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        self.pipe.unlink();
    }
}
