//! Feeds arbitrary bytes, as the whole shared memory object, to the path a
//! consumer takes when it attaches: header and trigger directory validation
//! (`view::read_bus`), then — only if that passed — every access the
//! control view allows (each slot and consumer entry). Any input must give
//! `Ok` or a typed error: no panic, no out-of-bounds access, no hang.
//!
//! ```sh
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run attach_header -- -max_total_time=600
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use shm_layout::pin;
use shm_layout::view::read_bus;
use shm_layout::ControlView;

/// A page of memory, page-aligned like a mapping.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Page([u8; 4096]);

fuzz_target!(|data: &[u8]| {
    // A page-aligned copy, as a mapping would be.
    let mut pages = vec![Page([0; 4096]); data.len().div_ceil(4096)];
    // SAFETY: `pages` has at least data.len() bytes; any bits are bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), pages.as_mut_ptr() as *mut u8, data.len())
    };
    let base = pages.as_mut_ptr() as *mut u8;
    // SAFETY: `base` points to data.len() readable, page-aligned bytes that
    // live until the end of this closure.
    let Ok((fixed, layout, dir)) = (unsafe { read_bus(base, data.len(), data.len() as u64) })
    else {
        return;
    };
    assert_eq!(fixed.width, layout.width);
    assert!(dir.starts_with('/'));
    // Validation promised every section lies inside the object.
    assert!(layout.total_size <= data.len() as u64);
    // SAFETY: validation put the control part (control_len <= total_size
    // <= data.len()) inside the buffer, which outlives `view`.
    let view = unsafe { ControlView::new(base, layout) };
    let mut sum = 0u64;
    for s in view.slots() {
        sum = sum.wrapping_add(pin::pins(s));
    }
    for c in view.consumers() {
        sum = sum.wrapping_add(c.owner().0);
    }
    sum = sum.wrapping_add(view.dynamic().latest().map_or(0, |(seq, _)| seq));
    std::hint::black_box(sum);
});
