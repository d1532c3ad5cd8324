#![cfg(not(loom))]
//! Property tests of header validation (invariant 6: every failure is named,
//! never a panic, never an out-of-bounds layout).
//!
//! Whatever bytes and object size a consumer is handed, `header_from_bytes`
//! (and `read_header` over the same bytes) returns either a typed
//! `LayoutError` or a layout whose every section lies page-aligned, in
//! order, inside both the header's `total_size` and the real object size.

use proptest::prelude::*;
use shm_layout::header::{HeaderFixed, ENTRY_SIZE, HEADER_SIZE, MAGIC, PAGE};
use shm_layout::layout::{Layout, LayoutRequest, MAX_CONSUMERS, MAX_PINS_PER_CONSUMER};
use shm_layout::tables::CONSUMER_ENTRY_SIZE;
use shm_layout::view::{header_from_bytes, read_header};
use shm_layout::LayoutError;

/// Checks everything a consumer relies on before it touches the mapping.
/// All arithmetic is in `u128`, so the check itself cannot overflow.
fn check_layout(fixed: &HeaderFixed, l: &Layout, object_size: u64) -> Result<(), TestCaseError> {
    let page = u128::from(PAGE);
    let w = |v: u64| u128::from(v);
    // The layout is the header's copy, field for field.
    prop_assert_eq!(fixed.magic, MAGIC);
    prop_assert_eq!(
        (fixed.width, fixed.height, fixed.stride, fixed.bgr_stride),
        (l.width, l.height, l.stride, l.bgr_stride)
    );
    prop_assert_eq!(
        (
            fixed.slot_count,
            fixed.max_consumers,
            fixed.pins_per_consumer
        ),
        (l.slot_count, l.max_consumers, l.pins_per_consumer)
    );
    prop_assert_eq!(
        (
            fixed.slot_table_offset,
            fixed.consumer_table_offset,
            fixed.bgr_offset,
            fixed.gray_offset,
            fixed.slot_pitch,
            fixed.total_size
        ),
        (
            l.slot_table_offset,
            l.consumer_table_offset,
            l.bgr_offset,
            l.gray_offset,
            l.slot_pitch,
            l.total_size
        )
    );
    // Geometry in range.
    prop_assert!((1..=16_384).contains(&l.width) && (1..=16_384).contains(&l.height));
    prop_assert!((1..=MAX_CONSUMERS).contains(&l.max_consumers));
    prop_assert!((1..=MAX_PINS_PER_CONSUMER).contains(&l.pins_per_consumer));
    prop_assert_eq!(l.slot_count, l.max_consumers * l.pins_per_consumer + 2);
    prop_assert!(u64::from(l.stride) >= u64::from(l.width) * u64::from(l.format.bytes_per_pixel()));
    prop_assert_eq!(l.stride % l.format.bytes_per_channel(), 0);
    prop_assert_eq!(
        (
            fixed.pixel_format,
            u32::from(fixed.channels),
            u32::from(fixed.bytes_per_pixel)
        ),
        (
            l.format.code(),
            l.format.channels(),
            l.format.bytes_per_pixel()
        )
    );
    prop_assert!((1..=l.format.container_bits()).contains(&l.significant_bits));
    prop_assert!(u64::from(l.bgr_stride) >= 3 * u64::from(l.width));
    // Page alignment.
    for (name, off) in [
        ("slot_table_offset", l.slot_table_offset),
        ("consumer_table_offset", l.consumer_table_offset),
        ("bgr_offset", l.bgr_offset),
        ("gray_offset", l.gray_offset),
        ("slot_pitch", l.slot_pitch),
    ] {
        prop_assert_eq!(w(off) % page, 0, "{} = {} is not page aligned", name, off);
    }
    // Sections in order, without overlap, after the header page.
    let slot_table_end = w(l.slot_table_offset) + u128::from(l.slot_count) * w(ENTRY_SIZE);
    let consumer_table_end =
        w(l.consumer_table_offset) + u128::from(l.max_consumers) * w(CONSUMER_ENTRY_SIZE);
    let bgr_end = w(l.bgr_offset) + l.bgr_len() as u128;
    prop_assert!(w(l.slot_table_offset) >= page);
    prop_assert!(slot_table_end <= w(l.consumer_table_offset));
    prop_assert!(consumer_table_end <= w(l.bgr_offset));
    prop_assert!(bgr_end <= w(l.gray_offset));
    prop_assert_eq!(l.control_len(), l.bgr_offset);
    // Every gray slot holds a frame and the last one ends inside the object.
    prop_assert!(l.frame_len() as u128 <= w(l.slot_pitch));
    let last = l.gray_slot_offset(l.slot_count - 1);
    prop_assert_eq!(
        w(last),
        w(l.gray_offset) + u128::from(l.slot_count - 1) * w(l.slot_pitch)
    );
    prop_assert!(w(last) + w(l.slot_pitch) <= w(l.total_size));
    prop_assert!(l.total_size <= object_size);
    Ok(())
}

/// Feeds `bytes` and `object_size` to `header_from_bytes` and, over an
/// 8-aligned copy of the same bytes, to `read_header`: both must return (not
/// panic), agree, and on success satisfy [`check_layout`]. Returns the result.
fn parse(
    bytes: &[u8],
    object_size: u64,
) -> Result<Result<(HeaderFixed, Layout), LayoutError>, TestCaseError> {
    let got = header_from_bytes(bytes, object_size);
    if let Ok((fixed, layout)) = &got {
        check_layout(fixed, layout, object_size)?;
    }
    // Every error names itself.
    if let Err(e) = &got {
        prop_assert!(!e.to_string().is_empty());
    }

    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `words` is 8-aligned and holds at least `bytes.len()` bytes,
    // all initialised, for the whole call.
    let via_ptr = unsafe { read_header(words.as_ptr().cast(), bytes.len(), object_size) };
    match (&got, &via_ptr) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
        // read_header also bounds the object size by a header's size
        // (header_from_bytes leaves that to validation): there it must say
        // TooSmall; everywhere else both parsers name the same error.
        (Err(_), Err(b)) if object_size < u64::from(HEADER_SIZE) => {
            let too_small = matches!(b, LayoutError::TooSmall { .. });
            prop_assert!(too_small, "object of {} bytes: {:?}", object_size, b);
        }
        (Err(a), Err(b)) => prop_assert_eq!(a, b),
        _ => prop_assert!(
            false,
            "header_from_bytes gave {:?} but read_header gave {:?}",
            got,
            via_ptr
        ),
    }
    Ok(got)
}

/// A valid request: geometry in range (the bus may still be too big, which
/// `Layout::compute` reports).
fn request() -> impl Strategy<Value = LayoutRequest> {
    (
        prop_oneof![1u32..=64, 1u32..=4096, 1u32..=16_384, Just(16_384)],
        prop_oneof![1u32..=64, 1u32..=4096, 1u32..=16_384, Just(16_384)],
        1u32..=MAX_CONSUMERS,
        1u32..=MAX_PINS_PER_CONSUMER,
        prop::sample::select(shm_layout::format::ALL_FORMATS.to_vec()),
    )
        .prop_map(
            |(width, height, max_consumers, pins_per_consumer, format)| LayoutRequest {
                width,
                height,
                max_consumers,
                pins_per_consumer,
                format,
                significant_bits: 0,
            },
        )
}

/// The published header of a computed layout, magic set.
fn valid_header(l: &Layout) -> HeaderFixed {
    HeaderFixed {
        magic: MAGIC,
        ..l.header(0x1234_5678, 4242, 30_000, 0, 1)
    }
}

/// The header as a consumer reads it: 256 bytes, the fixed part first.
fn header_bytes(h: &HeaderFixed, tail: u8) -> Vec<u8> {
    let mut bytes = vec![tail; HEADER_SIZE as usize];
    bytes[..std::mem::size_of::<HeaderFixed>()].copy_from_slice(bytemuck::bytes_of(h));
    bytes
}

/// Number of `u32`/`u64` fields of `HeaderFixed`, in declaration order.
const FIELDS: usize = 23;

/// Reads field `i` of `h` (widened to `u64`).
fn field(h: &HeaderFixed, i: usize) -> u64 {
    match i {
        0 => h.magic,
        1 => h.version.into(),
        2 => h.header_size.into(),
        3 => h.total_size,
        4 => h.instance_id,
        5 => h.producer_pid.into(),
        6 => h.pixel_format.into(),
        7 => h.width.into(),
        8 => h.height.into(),
        9 => h.stride.into(),
        10 => h.slot_count.into(),
        11 => h.max_consumers.into(),
        12 => h.pins_per_consumer.into(),
        13 => h.fps_milli.into(),
        14 => h.bgr_stride.into(),
        15 => h.flags.into(),
        16 => u32::from_le_bytes([
            h.channels,
            h.bytes_per_pixel,
            h.significant_bits,
            h._reserved,
        ])
        .into(),
        17 => h.slot_table_offset,
        18 => h.consumer_table_offset,
        19 => h.bgr_offset,
        20 => h.gray_offset,
        21 => h.slot_pitch,
        22 => h.created_unix_ns,
        _ => unreachable!(),
    }
}

/// Sets field `i` of `h` to `v` (truncated for `u32` fields).
fn set_field(h: &mut HeaderFixed, i: usize, v: u64) {
    let v32 = v as u32;
    match i {
        0 => h.magic = v,
        1 => h.version = v32,
        2 => h.header_size = v32,
        3 => h.total_size = v,
        4 => h.instance_id = v,
        5 => h.producer_pid = v32,
        6 => h.pixel_format = v32,
        7 => h.width = v32,
        8 => h.height = v32,
        9 => h.stride = v32,
        10 => h.slot_count = v32,
        11 => h.max_consumers = v32,
        12 => h.pins_per_consumer = v32,
        13 => h.fps_milli = v32,
        14 => h.bgr_stride = v32,
        15 => h.flags = v32,
        16 => {
            // The four bytes at 76: channels, bytes_per_pixel,
            // significant_bits, _reserved.
            let [a, b, c, d] = v32.to_le_bytes();
            (
                h.channels,
                h.bytes_per_pixel,
                h.significant_bits,
                h._reserved,
            ) = (a, b, c, d);
        }
        17 => h.slot_table_offset = v,
        18 => h.consumer_table_offset = v,
        19 => h.bgr_offset = v,
        20 => h.gray_offset = v,
        21 => h.slot_pitch = v,
        22 => h.created_unix_ns = v,
        _ => unreachable!(),
    }
}

/// One change to a valid header.
#[derive(Debug, Clone)]
enum Mutation {
    /// Field `i` := value.
    Set(usize, u64),
    /// Field `i` += delta (wrapping; small deltas probe the boundaries).
    Add(usize, i64),
    /// Field `i` += k pages (wrapping): moves sections while keeping
    /// alignment, so some mutated headers are still valid.
    AddPages(usize, i64),
    /// Field `i` *= k (wrapping).
    Mul(usize, u64),
    /// Flip one bit of the 256 header bytes.
    FlipBit(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let idx = 0..FIELDS;
    let interesting = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(64 << 30),
        (0u64..1 << 20).prop_map(|k| k * PAGE),
        any::<u64>(),
    ];
    prop_oneof![
        (idx.clone(), interesting).prop_map(|(i, v)| Mutation::Set(i, v)),
        (idx.clone(), -4097i64..=4097).prop_map(|(i, d)| Mutation::Add(i, d)),
        (idx.clone(), -4i64..=4).prop_map(|(i, k)| Mutation::AddPages(i, k)),
        (idx, 0u64..=4).prop_map(|(i, k)| Mutation::Mul(i, k)),
        (0..HEADER_SIZE as usize, 0u8..8).prop_map(|(b, bit)| Mutation::FlipBit(b, bit)),
    ]
}

fn apply(h: &HeaderFixed, tail: u8, mutations: &[Mutation]) -> Vec<u8> {
    let mut h = *h;
    let mut flips = Vec::new();
    for m in mutations {
        let (i, v) = match *m {
            Mutation::Set(i, v) => (i, v),
            Mutation::Add(i, d) => (i, field(&h, i).wrapping_add_signed(d)),
            Mutation::AddPages(i, k) => (
                i,
                field(&h, i).wrapping_add_signed(k.wrapping_mul(PAGE as i64)),
            ),
            Mutation::Mul(i, k) => (i, field(&h, i).wrapping_mul(k)),
            Mutation::FlipBit(b, bit) => {
                flips.push((b, bit));
                continue;
            }
        };
        set_field(&mut h, i, v);
    }
    let mut bytes = header_bytes(&h, tail);
    for (b, bit) in flips {
        bytes[b] ^= 1 << bit;
    }
    bytes
}

/// A value that is either placed where it would fit (`Fit(d)`: the smallest
/// page multiple at or after the required end, moved by `d` pages) or
/// arbitrary.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Fit(i64),
    Any(u64),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        16 => Just(Pick::Fit(0)),
        8 => (-1i64..=2).prop_map(Pick::Fit),
        1 => any::<u64>().prop_map(Pick::Any),
    ]
}

impl Pick {
    /// Resolves against the end (`u128`, so never overflowing) that the value
    /// must reach; saturates to the `u64` range.
    fn resolve(self, end: u128) -> u64 {
        match self {
            Pick::Any(v) => v,
            Pick::Fit(d) => {
                let page = i128::from(PAGE as i64);
                let fit = (end as i128 + page - 1) / page * page + i128::from(d) * page;
                u64::try_from(fit.max(0)).unwrap_or(u64::MAX)
            }
        }
    }
}

/// A dimension: small, in range, or arbitrary.
fn dimension() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => 1u32..=64,
        3 => 1u32..=2048,
        1 => 1u32..=16_384,
        1 => any::<u32>(),
    ]
}

/// A count: small, in `1..=max`, or arbitrary.
fn count(max: u32) -> impl Strategy<Value = u32> {
    prop_oneof![6 => 1..=4u32, 3 => 1..=max, 1 => any::<u32>()]
}

/// Row padding: a little less than needed, enough, or arbitrary.
fn padding() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![12 => (-2i64..=128).prop_map(Some), 1 => Just(None)]
}

/// A header past the first checks, with loose geometry and offsets, and an
/// object size.
fn loose_header() -> impl Strategy<Value = (HeaderFixed, u64)> {
    (
        (
            dimension(),
            dimension(),
            count(MAX_CONSUMERS),
            count(MAX_PINS_PER_CONSUMER),
            prop::option::weighted(0.15, any::<u32>()),
        ),
        (padding(), padding(), any::<u32>(), any::<u32>()),
        (pick(), pick(), pick(), pick(), pick(), pick(), pick()),
    )
        .prop_map(
            |(
                (width, height, max_consumers, pins, slot_count),
                (stride_pad, bgr_pad, any_stride, any_bgr_stride),
                (p_slots, p_consumers, p_bgr, p_gray, p_pitch, p_total, p_object),
            )| {
                let row = |min: u64, pad: Option<i64>, any: u32| match pad {
                    Some(d) => u32::try_from(min.saturating_add_signed(d)).unwrap_or(u32::MAX),
                    None => any,
                };
                let stride = row(width.into(), stride_pad, any_stride);
                let bgr_stride = row(3 * u64::from(width), bgr_pad, any_bgr_stride);
                let slot_count =
                    slot_count.unwrap_or(max_consumers.wrapping_mul(pins).wrapping_add(2));
                let entries = |n: u32| u128::from(n) * u128::from(ENTRY_SIZE);
                let h128 = u128::from(height);
                let slot_table_offset = p_slots.resolve(u128::from(PAGE));
                let consumer_table_offset =
                    p_consumers.resolve(u128::from(slot_table_offset) + entries(slot_count));
                let bgr_offset = p_bgr.resolve(
                    u128::from(consumer_table_offset)
                        + u128::from(max_consumers) * u128::from(CONSUMER_ENTRY_SIZE),
                );
                let gray_offset =
                    p_gray.resolve(u128::from(bgr_offset) + u128::from(bgr_stride) * h128);
                let slot_pitch = p_pitch.resolve(u128::from(stride) * h128);
                let total_size = p_total.resolve(
                    u128::from(gray_offset) + u128::from(slot_count) * u128::from(slot_pitch),
                );
                let object_size = p_object.resolve(u128::from(total_size));
                let h = HeaderFixed {
                    magic: MAGIC,
                    version: shm_layout::header::LAYOUT_VERSION,
                    header_size: HEADER_SIZE,
                    total_size,
                    instance_id: 7,
                    producer_pid: 4242,
                    pixel_format: shm_layout::header::PIXEL_FORMAT_GRAY8,
                    width,
                    height,
                    stride,
                    slot_count,
                    max_consumers,
                    pins_per_consumer: pins,
                    fps_milli: 30_000,
                    bgr_stride,
                    flags: 0,
                    channels: 1,
                    bytes_per_pixel: 1,
                    significant_bits: 8,
                    _reserved: 0,
                    slot_table_offset,
                    consumer_table_offset,
                    bgr_offset,
                    gray_offset,
                    slot_pitch,
                    created_unix_ns: 1,
                };
                (h, object_size)
            },
        )
}

/// How the object size relates to the header's `total_size`.
fn object_size(total: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(total),
        (0u64..=2 * PAGE).prop_map(move |d| total.saturating_add(d)),
        (0u64..=2 * PAGE).prop_map(move |d| total.saturating_sub(d)),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

proptest! {
    /// Arbitrary bytes (any length, including shorter than a header) and
    /// an arbitrary object size: a typed error or a sound layout.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..=2 * HEADER_SIZE as usize),
        object_size in any::<u64>(),
    ) {
        let got = parse(&bytes, object_size)?;
        if bytes.len() < HEADER_SIZE as usize {
            let is_too_small = matches!(got, Err(LayoutError::TooSmall { .. }));
            prop_assert!(is_too_small);
        }
    }

    /// A header exactly as a producer publishes it validates to the computed
    /// layout when the object is big enough, and is `Truncated` otherwise.
    #[test]
    fn computed_headers_validate(
        req in request(),
        tail in any::<u8>(),
        slack in prop_oneof![Just(0i64), -8192i64..=8192],
    ) {
        let l = match Layout::compute(req) {
            Ok(l) => l,
            Err(e) => {
                // A request in range is refused only for a bus over 64 GiB.
                let too_big = matches!(e, LayoutError::Field { field: "total_size", .. });
                prop_assert!(too_big, "{:?} refused: {}", req, e);
                return Ok(());
            }
        };
        let object_size = l.total_size.saturating_add_signed(slack);
        let got = parse(&header_bytes(&valid_header(&l), tail), object_size)?;
        if object_size >= l.total_size {
            prop_assert_eq!(got.map(|(_, layout)| layout), Ok(l));
        } else {
            let truncated = matches!(got, Err(LayoutError::Truncated { .. }));
            prop_assert!(truncated);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Headers with a correct magic, version, header size and pixel format
    /// whose geometry and offsets are each either plausible (in range, or a
    /// section placed a page before, at or after where it would fit) or
    /// arbitrary, with an object size near or far from `total_size`: every
    /// check of validation is reached, and it never panics.
    #[test]
    fn loose_headers_never_panic(
        (h, object_size) in loose_header(),
        tail in any::<u8>(),
    ) {
        let _ = parse(&header_bytes(&h, tail), object_size)?;
    }

    /// One to four mutations of a valid header (field set to an interesting
    /// value, nudged by a few bytes or pages, scaled, or a bit flipped) and
    /// an object size near the header's `total_size`: a typed error or a
    /// sound layout, never a panic.
    #[test]
    fn mutated_headers_never_panic(
        (l, object_size) in request()
            .prop_filter_map("bus over 64 GiB", |r| Layout::compute(r).ok())
            .prop_flat_map(|l| (Just(l), object_size(l.total_size))),
        tail in any::<u8>(),
        mutations in prop::collection::vec(mutation(), 1..=4),
    ) {
        let bytes = apply(&valid_header(&l), tail, &mutations);
        let _ = parse(&bytes, object_size)?;
    }
}

/// The consumer's whole attach path (`view::read_bus`, then every access the
/// control view allows) on a buffer as large as the object it describes:
/// a valid header with a random trigger directory region and random table
/// contents, or a mutated one. Same contract as the fuzz target in `fuzz/`.
/// A page of memory, page-aligned like a mapping.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Page([u8; 4096]);

fn attach_path(object: &[u8]) -> Result<(), TestCaseError> {
    let mut pages = vec![Page([0; 4096]); object.len().div_ceil(4096)];
    // SAFETY: `pages` holds at least object.len() bytes; any bits are bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(object.as_ptr(), pages.as_mut_ptr() as *mut u8, object.len())
    };
    let base = pages.as_mut_ptr() as *mut u8;
    // SAFETY: object.len() readable, page-aligned bytes (as a mapping would
    // be: ControlView's contract) that outlive the call.
    let Ok((_, layout, dir)) =
        (unsafe { shm_layout::view::read_bus(base, object.len(), object.len() as u64) })
    else {
        return Ok(());
    };
    prop_assert!(dir.starts_with('/'));
    prop_assert!(layout.total_size <= object.len() as u64);
    // SAFETY: validation put the control part inside the buffer.
    let view = unsafe { shm_layout::ControlView::new(base, layout) };
    // Every word the view hands out is the object's word at the offset the
    // layout gives (little-endian, as written by any process).
    let word = |at: u64| {
        let at = at as usize;
        u64::from_le_bytes(object[at..at + 8].try_into().unwrap())
    };
    prop_assert_eq!(view.slots().len(), layout.slot_count as usize);
    for (k, s) in view.slots().iter().enumerate() {
        let at = layout.slot_table_offset + 64 * k as u64;
        prop_assert_eq!(shm_layout::pin::pins(s), word(at));
        prop_assert_eq!(
            s.seq.load(shm_layout::sync::Ordering::Relaxed),
            word(at + 8)
        );
    }
    prop_assert_eq!(view.consumers().len(), layout.max_consumers as usize);
    for (k, c) in view.consumers().iter().enumerate() {
        let at = layout.consumer_table_offset + shm_layout::tables::CONSUMER_ENTRY_SIZE * k as u64;
        prop_assert_eq!(c.owner().0, word(at));
    }
    prop_assert_eq!(
        view.dynamic()
            .latest
            .load(shm_layout::sync::Ordering::Relaxed),
        word(128)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn attach_path_never_panics(
        dir in prop::collection::vec(any::<u8>(), 0..256),
        tables in prop::collection::vec(any::<u8>(), 0..512),
        mutations in prop::collection::vec(mutation(), 0..3),
        tail in any::<u8>(),
    ) {
        let l = Layout::compute(LayoutRequest { width: 64, height: 48, max_consumers: 2, pins_per_consumer: 1, format: shm_layout::PixelFormat::Gray8, significant_bits: 0 })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut object = vec![0u8; l.total_size as usize];
        let head = apply(&valid_header(&l), tail, &mutations);
        object[..head.len().min(256)].copy_from_slice(&head[..head.len().min(256)]);
        object[256..256 + dir.len()].copy_from_slice(&dir);
        let t = l.slot_table_offset as usize;
        object[t..t + tables.len()].copy_from_slice(&tables);
        attach_path(&object)?;
        // And with a valid trigger directory, so the walk is reached.
        let good = shm_layout::header::encode_trigger_dir("/tmp/framebus-0/fuzz")
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        object[256..512].copy_from_slice(&good);
        attach_path(&object)?;
    }
}
