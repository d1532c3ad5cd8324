//! Bus objects made by hand, as another process could make them: a valid
//! header (then corrupted by the test as it likes) planted in /dev/shm; and
//! a writable mapping of a live bus's control part, through which a test
//! writes the tables as a hostile process of the same user could.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use shm_layout::header::MAGIC;
use shm_layout::view::ControlView;
use shm_layout::{Layout, LayoutRequest, PixelFormat};

use super::Bus;

/// Writes a fake shm object for `bus` with `bytes`, sized `size`, mode 0600.
pub fn plant(bus: &Bus, bytes: &[u8], size: u64) {
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(bus.shm_path())
        .expect("create fake shm object");
    f.write_all(bytes).expect("write");
    f.set_len(size).expect("size");
}

/// The published header bytes (magic set) of a gray8 bus of `width` x
/// `height` with 2 consumers x 1 pin, and its layout.
pub fn valid_header(width: u32, height: u32) -> (Vec<u8>, Layout) {
    let l = Layout::compute(LayoutRequest {
        width,
        height,
        max_consumers: 2,
        pins_per_consumer: 1,
        format: PixelFormat::Gray8,
        significant_bits: 0,
    })
    .expect("layout");
    let mut h = l.header(1, std::process::id(), 0, 0, 0);
    h.magic = MAGIC;
    (bytemuck::bytes_of(&h).to_vec(), l)
}

/// A read-write shared mapping of a live bus object, as any process of the
/// bus's user may make one. Unmapped on drop.
pub struct WritableBus {
    base: *mut std::ffi::c_void,
    len: usize,
    view: ControlView,
}

impl WritableBus {
    /// Maps all of `bus`'s current object read-write and validates its
    /// header.
    pub fn map(bus: &Bus) -> Self {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(bus.shm_path())
            .expect("open the bus object read-write");
        let size = f.metadata().expect("stat the bus object").len();
        let len = usize::try_from(size).expect("object size");
        // SAFETY: a fresh shared mapping (no address requested) of a file we
        // opened read-write; nothing in this process aliases it, and it is
        // unmapped only on drop, after the view (a field) is last used.
        let base = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                &f,
                0,
            )
        }
        .expect("map the bus object");
        // SAFETY: `base` is a page-aligned mapping of `len` bytes, kept
        // until drop.
        let (_, layout) = unsafe { shm_layout::view::read_header(base as *const u8, len, size) }
            .expect("the live bus's header validates");
        // SAFETY: the mapping holds the whole object (at least its control
        // part), read-write, page-aligned, and outlives the view (both are
        // dropped together, the mapping last).
        let view = unsafe { ControlView::new(base as *const u8, layout) };
        Self { base, len, view }
    }

    /// The bus's control part (header, slot table, consumer table).
    pub fn control(&self) -> &ControlView {
        &self.view
    }
}

// SAFETY: the mapping is only reached through `ControlView`, which hands out
// shared references to atomics (Send and Sync itself); the raw base is kept
// only to unmap it.
unsafe impl Send for WritableBus {}
// SAFETY: as above.
unsafe impl Sync for WritableBus {}

impl Drop for WritableBus {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are the mapping made in `map`; no reference
        // into it outlives `self` (the view borrows from `self`).
        let _ = unsafe { rustix::mm::munmap(self.base, self.len) };
    }
}
