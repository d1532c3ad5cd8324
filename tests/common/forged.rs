//! Bus objects made by hand, as another process could make them: a valid
//! header (then corrupted by the test as it likes) planted in /dev/shm.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use shm_layout::header::MAGIC;
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
