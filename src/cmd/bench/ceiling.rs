//! The memcpy ceiling every run is compared with.

use std::time::{Duration, Instant};

use anyhow::Context;
use shm_layout::Layout;

/// The ceiling: frames/s of a plain memcpy of one frame into the slots of a
/// shared memory object laid out like the bus (see [`slots`]), cycling
/// through the slots like the producer does.
pub(super) fn memcpy_fps(layout: &Layout) -> anyhow::Result<f64> {
    let len = layout.frame_len();
    let pitch = layout.slot_pitch as usize;
    let bytes = pitch * layout.slot_count as usize;
    let mut slots = slots(bytes)?;
    let src: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let start = Instant::now();
    let mut copies = 0usize;
    while copies < 20 || start.elapsed() < Duration::from_millis(500) {
        let at = (copies % layout.slot_count as usize) * pitch;
        slots[at..at + len].copy_from_slice(&src);
        std::hint::black_box(&slots);
        copies += 1;
    }
    Ok(copies as f64 / start.elapsed().as_secs_f64())
}

/// `bytes` of shared memory like the bus's: a memfd, populated like the
/// producer's mapping.
#[cfg(unix)]
fn slots(bytes: usize) -> anyhow::Result<memmap2::MmapMut> {
    let fd = rustix::fs::memfd_create("framebus-bench-ceiling", rustix::fs::MemfdFlags::CLOEXEC)
        .context("cannot create a memfd for the memcpy ceiling")?;
    rustix::fs::ftruncate(&fd, bytes as u64).context("cannot size the memfd")?;
    let file = std::fs::File::from(fd);
    // SAFETY: the memfd is private to this process (nobody else can open
    // it, and no other mapping of it exists), so the mutable mapping is
    // never modified behind our back.
    let slots = unsafe {
        memmap2::MmapOptions::new()
            .len(bytes)
            .populate()
            .map_mut(&file)
    }
    .context("cannot map the memfd")?;
    Ok(slots)
}

/// `bytes` of shared memory like the bus's: a section backed by the paging
/// file (what an anonymous mapping is on Windows), every page touched
/// first so the copies do not pay for first faults.
#[cfg(not(unix))]
fn slots(bytes: usize) -> anyhow::Result<memmap2::MmapMut> {
    let mut slots = memmap2::MmapOptions::new()
        .len(bytes)
        .map_anon()
        .context("cannot map memory for the memcpy ceiling")?;
    slots.fill(0);
    Ok(slots)
}
