//! Feeds arbitrary bytes, as the whole shared memory object, to the path a
//! consumer takes when it attaches: header and trigger directory validation
//! (`view::read_bus`), then — only if that passed — every access the
//! control view allows (each slot and consumer entry). Any input must give
//! `Ok` or a typed error: no panic, no out-of-bounds access, no hang; and
//! an accepted header must round-trip: it is exactly the header a producer
//! writes for the layout it validated to, whose sections are checked here
//! once more, independently of the validation code.
//!
//! ```sh
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run attach_header -- -max_total_time=600
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use shm_layout::pin;
use shm_layout::view::read_bus;
use shm_layout::{ControlView, Layout};

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
    assert!(dir.starts_with('/'));
    // Round trip: the header a producer would write for this layout, with
    // the accepted header's own identity fields, is the accepted header
    // (field for field: nothing the layout drops was accepted unchecked),
    // and it validates to the same layout again.
    let mut again = layout.header(
        fixed.instance_id,
        fixed.producer_pid,
        fixed.fps_milli,
        fixed.flags,
        fixed.created_unix_ns,
    );
    again.magic = fixed.magic;
    again._reserved = fixed._reserved;
    assert_eq!(again, fixed, "an accepted header differs from its layout's");
    assert_eq!(
        Layout::validate(&again, data.len() as u64),
        Ok(layout),
        "an accepted header's layout does not round-trip"
    );
    // What validation promised, checked here on its own: the sections
    // follow the header page in order, page-aligned, without overlap, and
    // the last ends inside the object; every frame fits in its slot pitch.
    let slot_bytes = u64::from(layout.stride) * u64::from(layout.height);
    let bgr_bytes = u64::from(layout.bgr_stride) * u64::from(layout.height);
    let sections = [
        (layout.slot_table_offset, u64::from(layout.slot_count) * 64),
        (
            layout.consumer_table_offset,
            u64::from(layout.max_consumers) * 128,
        ),
        (layout.bgr_offset, bgr_bytes),
        (
            layout.gray_offset,
            layout.slot_pitch * u64::from(layout.slot_count),
        ),
    ];
    let mut end = 4096u64;
    for (offset, len) in sections {
        assert_eq!(offset % 4096, 0, "a section is not page-aligned");
        assert!(offset >= end, "sections overlap or are out of order");
        end = offset + len;
    }
    assert!(end <= layout.total_size && layout.total_size <= data.len() as u64);
    assert!(slot_bytes <= layout.slot_pitch);
    assert!(
        u64::from(layout.stride)
            >= u64::from(layout.width) * u64::from(layout.format.bytes_per_pixel())
    );
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
