//! The bus's shared memory as the producer owns it: creation (with takeover
//! of a stale bus), the mapping, and the writable gray slots.

use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use shm_layout::header::{HeaderFixed, MAGIC};
use shm_layout::sync::{AtomicU64, Ordering};
use shm_layout::{BusName, ControlView, Layout, LayoutError};

use crate::error::ProducerError;
use crate::sys;

/// The producer's mapping of its bus.
pub(crate) struct BusMemory {
    map: memmap2::MmapRaw,
    _fd: OwnedFd,
    control: ControlView,
    shm_name: String,
    unlinked: bool,
}

impl BusMemory {
    /// Creates the bus object, taking over a stale one, and publishes
    /// `header` (its magic last).
    pub(crate) fn create(
        bus: &BusName,
        header: HeaderFixed,
        mode: u32,
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
            if let Some(fd) = sys::create_shm(&shm_name, mode).map_err(ProducerError::os(
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
            take_over_stale(bus, &shm_name, trigger_dir)?;
        };
        if let Err(source) = sys::size_shm(&fd, layout.total_size) {
            let _ = sys::unlink_shm(&shm_name);
            return Err(ProducerError::NoSpace {
                bus: bus.to_string(),
                size: layout.total_size,
                source,
            });
        }
        let map = match sys::map_rw(&fd, layout.total_size) {
            Ok(m) => m,
            Err(e) => {
                let _ = sys::unlink_shm(&shm_name);
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
            _fd: fd,
            control,
            shm_name,
            unlinked: false,
        })
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

    /// Removes the object's name; the mapping stays valid until drop.
    pub(crate) fn unlink(&mut self) {
        if !self.unlinked {
            self.unlinked = true;
            if let Err(e) = sys::unlink_shm(&self.shm_name) {
                tracing::warn!("could not remove /dev/shm{}: {e}", self.shm_name);
            }
        }
    }
}

/// An object already has the bus's name, and this process holds the bus's
/// producer lock, so no live producer of this user owns it: it is stale
/// (its producer died) unless it belongs to another user or is not a
/// framebus bus at all, which is refused and left alone.
fn take_over_stale(bus: &BusName, shm_name: &str, trigger_dir: &Path) -> Result<(), ProducerError> {
    let path = format!("/dev/shm{shm_name}");
    let Some((fd, size)) =
        sys::open_shm_read(shm_name).map_err(ProducerError::os(format!("cannot open {path}")))?
    else {
        return Ok(()); // gone meanwhile: just retry
    };
    let mut head = [0u8; 36];
    let got = std::fs::File::from(
        fd.try_clone()
            .map_err(ProducerError::os(format!("cannot read {path}")))?,
    )
    .read_at(&mut head, 0)
    .unwrap_or(0);
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
    tracing::info!("taking over stale bus {bus}: {path} ({size} bytes) was left by process {pid}, which is gone");
    sys::unlink_shm(shm_name).map_err(ProducerError::os(format!("cannot remove stale {path}")))?;
    sys::remove_trigger_dir(trigger_dir);
    Ok(())
}

impl Drop for BusMemory {
    fn drop(&mut self) {
        self.unlink();
    }
}
