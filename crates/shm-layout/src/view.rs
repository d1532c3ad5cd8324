//! Typed access to a mapped bus: validation of raw memory, then `&`
//! references to the atomic header fields and table entries, and offsets of
//! the pixel sections. Pointer arithmetic only; mapping is the caller's job.

use crate::error::LayoutError;
use crate::header::{
    BgrSeqlock, HeaderDynamic, HeaderFixed, BGR_SEQLOCK_OFFSET, DYNAMIC_OFFSET, HEADER_SIZE,
};
use crate::layout::Layout;
use crate::sync::{AtomicU64, Ordering};
use crate::tables::{ConsumerEntry, SlotEntry};

/// Reads and checks the header of a mapped object: the magic with Acquire,
/// then one volatile copy of the fixed part, validated against
/// `object_size`. Returns the copy and the validated layout.
///
/// # Safety
/// `base` must point to at least `mapped_len` readable bytes that stay mapped
/// for the duration of the call, aligned to 8 bytes (a page, in practice).
pub unsafe fn read_header(
    base: *const u8,
    mapped_len: usize,
    object_size: u64,
) -> Result<(HeaderFixed, Layout), LayoutError> {
    let min = u64::from(HEADER_SIZE);
    if (mapped_len as u64) < min || object_size < min {
        return Err(LayoutError::TooSmall {
            size: object_size.min(mapped_len as u64),
            min,
        });
    }
    // SAFETY: offset 0 is in bounds and 8-aligned (caller), and every process
    // accesses the magic word only atomically.
    let magic = unsafe { &*(base as *const AtomicU64) }.load(Ordering::Acquire);
    if magic == 0 {
        return Err(LayoutError::NotReady);
    }
    // SAFETY: 128 bytes at `base` are in bounds (checked above); a volatile
    // read copies them out without ever forming a reference into memory that
    // another process might be writing; any bit pattern is a valid
    // `HeaderFixed` (it is Pod), and the copy is validated before use.
    let fixed = unsafe { std::ptr::read_volatile(base as *const HeaderFixed) };
    let fixed = HeaderFixed { magic, ..fixed };
    let layout = Layout::validate(&fixed, object_size)?;
    Ok((fixed, layout))
}

/// Reads the trigger directory path from a mapped header page (see
/// [`crate::header::TRIGGER_DIR_OFFSET`]).
///
/// # Safety
/// `base` must point to at least `mapped_len` readable bytes that stay
/// mapped for the duration of the call.
pub unsafe fn read_trigger_dir(base: *const u8, mapped_len: usize) -> Result<String, LayoutError> {
    use crate::header::{decode_trigger_dir, TRIGGER_DIR_LEN, TRIGGER_DIR_OFFSET};
    let end = TRIGGER_DIR_OFFSET as usize + TRIGGER_DIR_LEN;
    if mapped_len < end {
        return Err(LayoutError::TooSmall {
            size: mapped_len as u64,
            min: end as u64,
        });
    }
    // SAFETY: the 256 bytes at offset 256 are in bounds (checked above); a
    // volatile copy never forms a reference into shared memory, and the
    // copy is validated before use. The producer writes them once, before
    // it publishes the magic that the caller has already seen.
    let bytes: [u8; TRIGGER_DIR_LEN] = unsafe {
        std::ptr::read_volatile(
            base.add(TRIGGER_DIR_OFFSET as usize) as *const [u8; TRIGGER_DIR_LEN]
        )
    };
    decode_trigger_dir(&bytes).map(str::to_owned)
}

/// Everything a consumer reads from a bus's header page before it maps the
/// rest: the validated fixed header, its layout, and the trigger directory.
/// This is the whole untrusted-input path of attaching (fuzzed in `fuzz/`).
///
/// # Safety
/// As [`read_header`]: `base` points to at least `mapped_len` readable,
/// 8-aligned bytes that stay mapped for the duration of the call.
pub unsafe fn read_bus(
    base: *const u8,
    mapped_len: usize,
    object_size: u64,
) -> Result<(HeaderFixed, Layout, String), LayoutError> {
    // SAFETY: forwarded from this function's contract.
    let (fixed, layout) = unsafe { read_header(base, mapped_len, object_size) }?;
    // SAFETY: as above; read_trigger_dir checks its own bounds.
    let dir = unsafe { read_trigger_dir(base, mapped_len) }?;
    Ok((fixed, layout, dir))
}

/// Parses a header from plain bytes (tests, fuzzing, tools reading a file).
pub fn header_from_bytes(
    bytes: &[u8],
    object_size: u64,
) -> Result<(HeaderFixed, Layout), LayoutError> {
    let min = HEADER_SIZE as usize;
    if bytes.len() < min {
        return Err(LayoutError::TooSmall {
            size: bytes.len() as u64,
            min: min as u64,
        });
    }
    let fixed: HeaderFixed =
        bytemuck::pod_read_unaligned(&bytes[..std::mem::size_of::<HeaderFixed>()]);
    let layout = Layout::validate(&fixed, object_size)?;
    Ok((fixed, layout))
}

/// The control part of a validated bus: header dynamics, slot table and
/// consumer table, all atomics.
#[derive(Debug, Clone, Copy)]
pub struct ControlView {
    base: *const u8,
    layout: Layout,
}

// SAFETY: a ControlView only hands out `&` references to atomics in shared
// memory, which are Sync; the raw pointer is just their common base.
unsafe impl Send for ControlView {}
// SAFETY: as above.
unsafe impl Sync for ControlView {}

impl ControlView {
    /// Wraps a mapping whose header validated to `layout`.
    ///
    /// # Safety
    /// `base` must be the page-aligned start of a mapping of at least
    /// `layout.control_len()` readable and writable bytes of the object whose
    /// header gave `layout`, and it must stay mapped for as long as the view
    /// or any reference obtained from it lives.
    pub unsafe fn new(base: *const u8, layout: Layout) -> Self {
        debug_assert!(
            base as usize % 64 == 0,
            "ControlView needs a page-aligned base"
        );
        Self { base, layout }
    }

    /// The validated layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The producer's dynamic header fields.
    pub fn dynamic(&self) -> &HeaderDynamic {
        // SAFETY: DYNAMIC_OFFSET + 64 <= HEADER_SIZE <= control_len (new's
        // contract), 64-aligned on a page-aligned base, and every field is an
        // atomic, so a shared reference is sound while others write.
        unsafe { &*(self.base.add(DYNAMIC_OFFSET as usize) as *const HeaderDynamic) }
    }

    /// The debug BGR slot's seqlock.
    pub fn bgr_seqlock(&self) -> &BgrSeqlock {
        // SAFETY: as for `dynamic`, at BGR_SEQLOCK_OFFSET.
        unsafe { &*(self.base.add(BGR_SEQLOCK_OFFSET as usize) as *const BgrSeqlock) }
    }

    /// The whole slot table (`slot_count` entries).
    pub fn slots(&self) -> &[SlotEntry] {
        // SAFETY: validation put slot_count entries of 64 bytes at the
        // page-aligned slot_table_offset, inside control_len; entries are all
        // atomics.
        unsafe {
            std::slice::from_raw_parts(
                self.base.add(self.layout.slot_table_offset as usize) as *const SlotEntry,
                self.layout.slot_count as usize,
            )
        }
    }

    /// The whole consumer table (`max_consumers` entries).
    pub fn consumers(&self) -> &[ConsumerEntry] {
        // SAFETY: as for `slots`, at consumer_table_offset with max_consumers
        // entries.
        unsafe {
            std::slice::from_raw_parts(
                self.base.add(self.layout.consumer_table_offset as usize) as *const ConsumerEntry,
                self.layout.max_consumers as usize,
            )
        }
    }
}
