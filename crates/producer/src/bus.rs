//! The bus's shared memory as the producer owns it: creation (with takeover
//! of a stale bus), the mapping, and the writable gray slots.

use std::path::Path;

use shm_layout::header::{HeaderFixed, MAGIC};
use shm_layout::sync::{AtomicU64, Ordering};
use shm_layout::{BusName, ControlView, Layout, LayoutError};

use crate::error::ProducerError;
use crate::sys;

/// The producer's mapping of its bus.
pub(crate) struct BusMemory {
    map: sys::GuardedMap,
    /// The producer's open of the object: it holds the producer's liveness
    /// token (byte 0) for as long as this open (or the mapping) lives.
    fd: sys::BusHandle,
    control: ControlView,
    shm_name: String,
    unlinked: bool,
    /// A forked child's copy never unlinks the parent's object.
    fork: sys::ForkGuard,
}

impl BusMemory {
    /// Creates the bus object, taking over a stale one, and publishes
    /// `header` (its magic last).
    pub(crate) fn create(
        bus: &BusName,
        header: HeaderFixed,
        mode: u32,
        group: Option<u32>,
        trigger_dir: &Path,
    ) -> Result<Self, ProducerError> {
        let layout = Layout::validate(
            &HeaderFixed {
                magic: MAGIC,
                ..header
            },
            header.total_size,
        )?;
        let shm_name = bus.shm_name();
        let mut attempts = 0;
        let fd = loop {
            attempts += 1;
            if let Some(fd) = sys::create_shm(&shm_name, mode, group).map_err(ProducerError::os(
                format!("cannot create /dev/shm{shm_name}"),
            ))? {
                break fd;
            }
            if attempts > 3 {
                return Err(ProducerError::Os {
                    what: format!("cannot create /dev/shm{shm_name}"),
                    source: std::io::Error::other("another process keeps re-creating it"),
                });
            }
            take_over_stale(bus, trigger_dir)?;
        };
        // The trigger directory exists before the magic is published, so a
        // consumer never finds the bus without it (after the takeover, which
        // removes a stale one).
        if let Err(source) = sys::ensure_trigger_dir(trigger_dir, group) {
            let _ = sys::unlink_shm(&shm_name);
            return Err(ProducerError::TriggerDir {
                path: trigger_dir.to_path_buf(),
                source,
            });
        }
        // From here a failure removes the object and the (empty) trigger
        // directory made for it: nothing half-made is left behind.
        let undo = || {
            let _ = sys::unlink_shm(&shm_name);
            let _ = std::fs::remove_dir(trigger_dir);
        };
        if let Err(source) = sys::size_shm(&fd, layout.total_size) {
            undo();
            return Err(ProducerError::NoSpace {
                bus: bus.to_string(),
                size: layout.total_size,
                source,
            });
        }
        // The producer's liveness token, before anyone can see the bus:
        // consumers test it instead of a pid. The object is new (exclusive
        // create), so nobody else can hold it.
        match sys::try_hold_token(&fd, sys::TokenId::Producer) {
            Ok(true) => {}
            Ok(false) => {
                undo();
                return Err(
                    ProducerError::os(format!("cannot lock /dev/shm{shm_name}"))(
                        std::io::Error::other(
                            "another process holds the producer token of a bus just created",
                        ),
                    ),
                );
            }
            Err(e) => {
                undo();
                return Err(ProducerError::os(format!(
                    "cannot take the producer's liveness token on /dev/shm{shm_name} (open file description locks need Linux 3.15 or later)"
                ))(e));
            }
        }
        let map = match sys::map_rw_populated(&fd, layout.total_size) {
            Ok(m) => m,
            Err(e) => {
                undo();
                return Err(ProducerError::os(format!("cannot map /dev/shm{shm_name}"))(
                    e,
                ));
            }
        };
        let base = map.as_mut_ptr();
        // SAFETY: the mapping is `total_size >= HEADER_SIZE` bytes, page
        // aligned, and nobody else reads the fixed header before the magic is
        // published below (readers treat magic 0 as "not ready").
        unsafe { std::ptr::write_volatile(base as *mut HeaderFixed, header) };
        let dir_bytes = trigger_dir
            .to_str()
            .ok_or(LayoutError::TriggerDir {
                why: "it is not UTF-8",
            })
            .and_then(shm_layout::header::encode_trigger_dir);
        let dir_bytes = match dir_bytes {
            Ok(b) => b,
            Err(e) => {
                undo();
                return Err(e.into());
            }
        };
        // SAFETY: the header page (4096 bytes, inside the mapping) holds the
        // trigger directory at offset 256..512, after the 256-byte header;
        // nobody reads it before the magic is published below.
        unsafe {
            std::ptr::write_volatile(
                base.add(shm_layout::header::TRIGGER_DIR_OFFSET as usize)
                    as *mut [u8; shm_layout::header::TRIGGER_DIR_LEN],
                dir_bytes,
            )
        };
        // SAFETY: `map` covers the whole object whose header validated to
        // `layout`, read-write, and lives as long as `self` (which owns it and
        // every reference handed out borrows `self`).
        let control = unsafe { ControlView::new(base, layout) };
        // SAFETY: offset 0 is in bounds and page aligned; the magic word is
        // only ever accessed atomically. Release: a reader that sees MAGIC
        // with Acquire sees the whole fixed header written above.
        unsafe { &*(base as *const AtomicU64) }.store(MAGIC, Ordering::Release);
        Ok(Self {
            map,
            fd,
            control,
            shm_name,
            unlinked: false,
            fork: sys::ForkGuard::new(),
        })
    }

    /// Whether the object was truncated under the mapping: a fault was
    /// repaired (writes since went to zero pages no consumer sees), or, when
    /// `check_size`, `fstat` says it is shorter than the layout.
    pub(crate) fn truncated(&self, check_size: bool) -> bool {
        self.map.broken()
            || (check_size
                && sys::object_size(&self.fd).is_ok_and(|size| size < self.layout().total_size))
    }

    /// The producer's open of the object.
    pub(crate) fn fd(&self) -> &sys::BusHandle {
        &self.fd
    }

    pub(crate) fn control(&self) -> &ControlView {
        &self.control
    }

    pub(crate) fn layout(&self) -> &Layout {
        self.control.layout()
    }

    /// Gray slot `slot`'s bytes, for the producer to write.
    ///
    /// # Safety
    /// The caller holds the slot's writer bit (`pin::try_begin_write`
    /// succeeded and `end_write` has not run), so no consumer reads it; and
    /// consumers map pixels read-only, so nobody else writes it.
    pub(crate) unsafe fn gray_slot_mut(&mut self, slot: u32) -> &mut [u8] {
        let layout = *self.layout();
        assert!(slot < layout.slot_count);
        let offset = layout.gray_slot_offset(slot) as usize;
        // SAFETY: validation put slot `slot` (frame_len bytes) inside the
        // mapping; exclusivity is the caller's contract above; `&mut self`
        // prevents two such slices from this producer at once.
        unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(offset), layout.frame_len())
        }
    }

    /// The debug BGR slot's first byte (page aligned, `bgr_len()` bytes),
    /// for the seqlock writer (`crate::bgr`), which writes it only with
    /// atomic stores.
    pub(crate) fn bgr_slot_ptr(&self) -> *mut u8 {
        let offset = self.layout().bgr_offset as usize;
        // SAFETY: validation put the BGR slot [bgr_offset, bgr_offset +
        // bgr_len) inside the mapping, so the offset is in bounds.
        unsafe { self.map.as_mut_ptr().add(offset) }
    }

    /// Removes the object's name; the mapping stays valid until drop.
    pub(crate) fn unlink(&mut self) {
        if self.fork.in_child() {
            return;
        }
        if !self.unlinked {
            self.unlinked = true;
            if let Err(e) = sys::unlink_shm(&self.shm_name) {
                tracing::warn!("could not remove /dev/shm{}: {e}", self.shm_name);
            }
        }
    }
}

/// What [`remove_stale`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Removed {
    /// The shared memory object's path and size, and the pid in its header.
    pub(crate) shm: Option<(String, u64, u32)>,
    /// FIFOs removed from the trigger directory.
    pub(crate) fifos: Vec<std::path::PathBuf>,
}

/// An object already has the bus's name, and this process holds the bus's
/// producer lock, so no live producer of this user owns it: it is stale
/// (its producer died) unless it belongs to another user or is not a
/// framebus bus at all, which is refused and left alone.
fn take_over_stale(bus: &BusName, trigger_dir: &Path) -> Result<(), ProducerError> {
    let removed = remove_stale(bus, trigger_dir)?;
    if let Some((path, size, pid)) = removed.shm {
        tracing::info!("taking over stale bus {bus}: {path} ({size} bytes) was left by process {pid}, which is gone");
    }
    Ok(())
}

/// Removes a stale bus's object and trigger directory. The caller holds the
/// bus's producer lock. Foreign objects and other users' are refused.
pub(crate) fn remove_stale(bus: &BusName, trigger_dir: &Path) -> Result<Removed, ProducerError> {
    let shm_name = &bus.shm_name();
    let path = format!("/dev/shm{shm_name}");
    let Some((fd, size)) =
        sys::open_shm_read(shm_name).map_err(ProducerError::os(format!("cannot open {path}")))?
    else {
        // No object: only FIFOs may be left.
        return Ok(Removed {
            shm: None,
            fifos: sys::remove_trigger_dir(trigger_dir),
        });
    };
    let mut head = [0u8; 512];
    let got = sys::read_at(&fd, &mut head, 0).unwrap_or(0);
    // The dead producer's consumers made their FIFOs where its header said.
    // The header is writable by every consumer (of a group, on a shared
    // bus): use the recorded path only if it is a trigger directory of this
    // bus and this user's own directory, so a scribbled header cannot make
    // us empty any other directory.
    let recorded = (got == head.len())
        .then(|| shm_layout::header::decode_trigger_dir(&head[256..]).ok())
        .flatten()
        .map(std::path::PathBuf::from)
        .filter(|dir| shm_layout::naming::is_trigger_dir_for(dir, bus) && sys::is_own_dir(dir));
    let trigger_dir = recorded.as_deref().unwrap_or(trigger_dir);
    let magic = if got >= 8 {
        u64::from_le_bytes(head[0..8].try_into().unwrap_or_default())
    } else {
        0
    };
    let pid = if got >= 36 {
        u32::from_le_bytes(head[32..36].try_into().unwrap_or_default())
    } else {
        0
    };
    if magic != 0 && magic != MAGIC {
        let reason = LayoutError::BadMagic {
            found: magic,
            expected: MAGIC,
        }
        .to_string();
        return Err(ProducerError::Foreign { path, reason });
    }
    let uid = sys::owner_uid(&fd).map_err(ProducerError::os(format!("cannot stat {path}")))?;
    if uid != sys::my_uid() {
        return Err(ProducerError::Foreign {
            path,
            reason: format!("it belongs to uid {uid}, not to this user"),
        });
    }
    sys::unlink_shm(shm_name).map_err(ProducerError::os(format!("cannot remove stale {path}")))?;
    let fifos = sys::remove_trigger_dir(trigger_dir);
    Ok(Removed {
        shm: Some((path, size, pid)),
        fifos,
    })
}

impl Drop for BusMemory {
    fn drop(&mut self) {
        self.unlink();
    }
}
