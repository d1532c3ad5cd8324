//! Known answers for the canonical layout: every offset and size of a few
//! geometries worked out by hand from doc/LAYOUT.md (not from
//! `Layout::compute`), the 64 GiB cap at its exact edge, and one named error
//! for each way a header can be wrong.

use shm_layout::header::{HeaderFixed, HEADER_SIZE, LAYOUT_VERSION, MAGIC, PIXEL_FORMAT_GRAY8};
use shm_layout::layout::{
    slot_count_for, MAX_CONSUMERS, MAX_DIMENSION, MAX_PINS_PER_CONSUMER, MAX_TOTAL_SIZE,
};
use shm_layout::{Layout, LayoutError, LayoutRequest};

fn req(width: u32, height: u32, max_consumers: u32, pins_per_consumer: u32) -> LayoutRequest {
    LayoutRequest {
        width,
        height,
        max_consumers,
        pins_per_consumer,
        format: shm_layout::PixelFormat::Gray8,
        significant_bits: 0,
    }
}

/// The expected figures of one geometry, in the order of `Layout`'s fields.
struct Known {
    req: LayoutRequest,
    stride: u32,
    bgr_stride: u32,
    slot_count: u32,
    slot_table_offset: u64,
    consumer_table_offset: u64,
    bgr_offset: u64,
    gray_offset: u64,
    slot_pitch: u64,
    total_size: u64,
    frame_len: usize,
    bgr_len: usize,
}

fn known() -> Vec<Known> {
    vec![
        // 1x1, one consumer with one pin: 3 slots; every section one page.
        Known {
            req: req(1, 1, 1, 1),
            stride: 64,
            bgr_stride: 64,
            slot_count: 3,
            slot_table_offset: 4096,
            consumer_table_offset: 8192,
            bgr_offset: 12288,
            gray_offset: 16384,
            slot_pitch: 4096,
            total_size: 16384 + 3 * 4096,
            frame_len: 64,
            bgr_len: 64,
        },
        // 100x10, 3 consumers x 2 pins: 8 slots; strides rounded to 64
        // (128, 300 -> 320); the BGR slot (3200 bytes) and a gray frame
        // (1280) each take one page.
        Known {
            req: req(100, 10, 3, 2),
            stride: 128,
            bgr_stride: 320,
            slot_count: 8,
            slot_table_offset: 4096,
            consumer_table_offset: 8192,
            bgr_offset: 12288,
            gray_offset: 16384,
            slot_pitch: 4096,
            total_size: 16384 + 8 * 4096,
            frame_len: 1280,
            bgr_len: 3200,
        },
        // 640x480, 8 x 1: 10 slots; the BGR slot is 921600 = 225 pages and
        // a gray frame 307200 = 75 pages exactly.
        Known {
            req: req(640, 480, 8, 1),
            stride: 640,
            bgr_stride: 1920,
            slot_count: 10,
            slot_table_offset: 4096,
            consumer_table_offset: 8192,
            bgr_offset: 12288,
            gray_offset: 12288 + 921_600,
            slot_pitch: 307_200,
            total_size: 933_888 + 10 * 307_200,
            frame_len: 307_200,
            bgr_len: 921_600,
        },
        // 1920x1080, 63 x 8: 506 slots, a slot table of 32384 bytes (8
        // pages), a consumer table of 63 x 128 = 8064 (2 pages); BGR
        // 6220800 bytes -> 1519 pages; a gray frame 2073600 -> 507 pages.
        Known {
            req: req(1920, 1080, 63, 8),
            stride: 1920,
            bgr_stride: 5760,
            slot_count: 506,
            slot_table_offset: 4096,
            consumer_table_offset: 4096 + 8 * 4096,
            bgr_offset: 4096 + 8 * 4096 + 2 * 4096,
            gray_offset: 45_056 + 1519 * 4096,
            slot_pitch: 507 * 4096,
            total_size: 6_266_880 + 506 * 507 * 4096,
            frame_len: 2_073_600,
            bgr_len: 6_220_800,
        },
        // 65x3, 2 x 3: strides 128 and 256 (195 -> 256); 8 slots.
        Known {
            req: req(65, 3, 2, 3),
            stride: 128,
            bgr_stride: 256,
            slot_count: 8,
            slot_table_offset: 4096,
            consumer_table_offset: 8192,
            bgr_offset: 12288,
            gray_offset: 16384,
            slot_pitch: 4096,
            total_size: 16384 + 8 * 4096,
            frame_len: 384,
            bgr_len: 768,
        },
    ]
}

#[test]
fn canonical_layouts_of_known_geometries() {
    for k in known() {
        let l = Layout::compute(k.req).unwrap();
        let r = k.req;
        let what = format!(
            "{}x{} {}x{}",
            r.width, r.height, r.max_consumers, r.pins_per_consumer
        );
        assert_eq!(
            l,
            Layout {
                width: r.width,
                height: r.height,
                stride: k.stride,
                bgr_stride: k.bgr_stride,
                slot_count: k.slot_count,
                max_consumers: r.max_consumers,
                pins_per_consumer: r.pins_per_consumer,
                format: shm_layout::PixelFormat::Gray8,
                significant_bits: 8,
                slot_table_offset: k.slot_table_offset,
                consumer_table_offset: k.consumer_table_offset,
                bgr_offset: k.bgr_offset,
                gray_offset: k.gray_offset,
                slot_pitch: k.slot_pitch,
                total_size: k.total_size,
            },
            "{what}"
        );
        assert_eq!(l.frame_len(), k.frame_len, "{what}");
        assert_eq!(l.bgr_len(), k.bgr_len, "{what}");
        assert_eq!(l.control_len(), k.bgr_offset, "{what}");
        assert_eq!(l.gray_slot_offset(0), k.gray_offset, "{what}");
        assert_eq!(
            l.gray_slot_offset(k.slot_count - 1),
            k.gray_offset + u64::from(k.slot_count - 1) * k.slot_pitch,
            "{what}"
        );
        assert_eq!(
            l.gray_slot_offset(k.slot_count - 1) + k.slot_pitch,
            k.total_size,
            "{what}: the last slot ends the object"
        );
        // The header the producer writes carries exactly these figures.
        let h = l.header(0x1122_3344_5566_7788, 4242, 30_000, 1, 99);
        let expect = HeaderFixed {
            magic: 0,
            version: LAYOUT_VERSION,
            header_size: HEADER_SIZE,
            total_size: k.total_size,
            instance_id: 0x1122_3344_5566_7788,
            producer_pid: 4242,
            pixel_format: PIXEL_FORMAT_GRAY8,
            width: r.width,
            height: r.height,
            stride: k.stride,
            slot_count: k.slot_count,
            max_consumers: r.max_consumers,
            pins_per_consumer: r.pins_per_consumer,
            fps_milli: 30_000,
            bgr_stride: k.bgr_stride,
            flags: 1,
            channels: 1,
            bytes_per_pixel: 1,
            significant_bits: 8,
            _reserved: 0,
            slot_table_offset: k.slot_table_offset,
            consumer_table_offset: k.consumer_table_offset,
            bgr_offset: k.bgr_offset,
            gray_offset: k.gray_offset,
            slot_pitch: k.slot_pitch,
            created_unix_ns: 99,
        };
        assert_eq!(h, expect, "{what}");
        // Published (magic set), it validates to the same layout, in an
        // object of exactly its size or larger, not smaller.
        let published = HeaderFixed { magic: MAGIC, ..h };
        assert_eq!(Layout::validate(&published, k.total_size), Ok(l), "{what}");
        assert_eq!(
            Layout::validate(&published, k.total_size + 4096),
            Ok(l),
            "{what}"
        );
        assert_eq!(
            Layout::validate(&published, k.total_size - 1),
            Err(LayoutError::Truncated {
                expected: k.total_size,
                actual: k.total_size - 1
            }),
            "{what}"
        );
    }
}

#[test]
fn slot_count_is_budget_plus_two() {
    assert_eq!(slot_count_for(1, 1), 3);
    assert_eq!(slot_count_for(4, 2), 10);
    assert_eq!(slot_count_for(63, 8), 506);
    assert_eq!(slot_count_for(7, 3), 23);
}

/// 15638x15009 with 41 consumers x 7 pins is exactly 64 GiB: the largest
/// bus accepted. One row more is refused, with the named error.
#[test]
fn the_64_gib_cap_at_its_edge() {
    let edge = Layout::compute(req(15638, 15009, 41, 7)).unwrap();
    assert_eq!(edge.total_size, MAX_TOTAL_SIZE);
    assert_eq!(MAX_TOTAL_SIZE, 1 << 36);
    let published = HeaderFixed {
        magic: MAGIC,
        ..edge.header(1, 1, 0, 0, 0)
    };
    assert_eq!(Layout::validate(&published, MAX_TOTAL_SIZE), Ok(edge));
    match Layout::compute(req(15638, 15010, 41, 7)) {
        Err(LayoutError::Field {
            field: "total_size",
            value,
            ..
        }) => assert!(value > MAX_TOTAL_SIZE, "{value}"),
        other => panic!("one row over 64 GiB: {other:?}"),
    }
    // A header claiming more than 64 GiB is refused before its sections
    // are looked at.
    assert_eq!(
        Layout::validate(
            &HeaderFixed {
                total_size: MAX_TOTAL_SIZE + 1,
                ..published
            },
            u64::MAX
        ),
        Err(LayoutError::Field {
            field: "total_size",
            value: MAX_TOTAL_SIZE + 1,
            why: "must be at most 64 GiB"
        })
    );
}

#[test]
fn geometry_limits_are_inclusive() {
    let ok = |r| Layout::compute(r).is_ok();
    let field = |r| match Layout::compute(r) {
        Err(LayoutError::Field { field, value, .. }) => (field, value),
        other => panic!("{r:?}: {other:?}"),
    };
    assert!(ok(req(MAX_DIMENSION, 1, 1, 1)));
    assert!(ok(req(1, MAX_DIMENSION, 1, 1)));
    assert!(ok(req(64, 64, MAX_CONSUMERS, 1)));
    assert!(ok(req(64, 64, 1, MAX_PINS_PER_CONSUMER)));
    assert_eq!(field(req(0, 1, 1, 1)), ("width", 0));
    assert_eq!(field(req(MAX_DIMENSION + 1, 1, 1, 1)), ("width", 16385));
    assert_eq!(field(req(1, 0, 1, 1)), ("height", 0));
    assert_eq!(field(req(1, MAX_DIMENSION + 1, 1, 1)), ("height", 16385));
    assert_eq!(field(req(1, 1, 0, 1)), ("max_consumers", 0));
    assert_eq!(field(req(1, 1, 64, 1)), ("max_consumers", 64));
    assert_eq!(field(req(1, 1, 1, 0)), ("pins_per_consumer", 0));
    assert_eq!(field(req(1, 1, 1, 9)), ("pins_per_consumer", 9));
}

fn good() -> (HeaderFixed, Layout) {
    let l = Layout::compute(req(100, 10, 3, 2)).unwrap();
    (
        HeaderFixed {
            magic: MAGIC,
            ..l.header(1, 2, 0, 0, 0)
        },
        l,
    )
}

fn field_error(h: &HeaderFixed, size: u64) -> (&'static str, u64) {
    match Layout::validate(h, size) {
        Err(LayoutError::Field { field, value, .. }) => (field, value),
        Err(LayoutError::Mismatch { field, found, .. }) => (field, found),
        other => panic!("{h:?}: {other:?}"),
    }
}

/// Each corruption of a valid header is refused with the error that names
/// it; the nearest valid values are accepted.
#[test]
fn validate_names_each_corrupt_field() {
    let (h, l) = good();
    let size = l.total_size;
    let v = |h: HeaderFixed| Layout::validate(&h, size);
    assert_eq!(v(HeaderFixed { magic: 0, ..h }), Err(LayoutError::NotReady));
    assert_eq!(
        v(HeaderFixed { magic: 7, ..h }),
        Err(LayoutError::BadMagic {
            found: 7,
            expected: MAGIC
        })
    );
    assert_eq!(
        v(HeaderFixed { version: 1, ..h }),
        Err(LayoutError::Version {
            found: 1,
            expected: LAYOUT_VERSION
        })
    );
    let f = |h: HeaderFixed| field_error(&h, size);
    assert_eq!(
        f(HeaderFixed {
            header_size: 255,
            ..h
        }),
        ("header_size", 255)
    );
    assert_eq!(
        f(HeaderFixed {
            pixel_format: 9,
            ..h
        }),
        ("pixel_format", 9)
    );
    assert_eq!(f(HeaderFixed { width: 0, ..h }), ("width", 0));
    assert_eq!(f(HeaderFixed { height: 16385, ..h }), ("height", 16385));
    assert_eq!(
        f(HeaderFixed {
            max_consumers: 64,
            ..h
        }),
        ("max_consumers", 64)
    );
    assert_eq!(
        f(HeaderFixed {
            pins_per_consumer: 9,
            ..h
        }),
        ("pins_per_consumer", 9)
    );
    assert_eq!(
        Layout::validate(&HeaderFixed { slot_count: 9, ..h }, size),
        Err(LayoutError::Mismatch {
            field: "slot_count",
            found: 9,
            expected: 8
        })
    );
    // stride >= width: equal is fine.
    assert_eq!(f(HeaderFixed { stride: 99, ..h }), ("stride", 99));
    assert!(v(HeaderFixed { stride: 100, ..h }).is_ok());
    // bgr_stride >= 3 * width: equal is fine.
    assert_eq!(
        f(HeaderFixed {
            bgr_stride: 299,
            ..h
        }),
        ("bgr_stride", 299)
    );
    assert!(v(HeaderFixed {
        bgr_stride: 300,
        ..h
    })
    .is_ok());
    // Offsets: page-aligned, in order, without overlap.
    assert_eq!(
        f(HeaderFixed {
            slot_table_offset: 4096 + 64,
            ..h
        }),
        ("slot_table_offset", 4160)
    );
    assert_eq!(
        f(HeaderFixed {
            slot_table_offset: 0,
            ..h
        }),
        ("slot_table_offset", 0),
        "the slot table may not overlap the header page"
    );
    assert_eq!(
        f(HeaderFixed {
            consumer_table_offset: 4096,
            ..h
        }),
        ("consumer_table_offset", 4096)
    );
    assert_eq!(
        f(HeaderFixed {
            bgr_offset: 8192,
            ..h
        }),
        ("bgr_offset", 8192)
    );
    assert_eq!(
        f(HeaderFixed {
            gray_offset: 12288,
            ..h
        }),
        ("gray_offset", 12288)
    );
    assert_eq!(
        f(HeaderFixed {
            gray_offset: 16384 + 1,
            ..h
        }),
        ("gray_offset", 16385)
    );
    // A section may start right where the previous one ends (one page of
    // BGR here: 3200 bytes), and anywhere after.
    assert!(v(HeaderFixed {
        gray_offset: 20480,
        total_size: size + 4096,
        ..h
    })
    .is_err_and(|e| matches!(e, LayoutError::Truncated { .. })));
    // Slot pitch: a page multiple, at least stride * height.
    assert_eq!(
        f(HeaderFixed {
            slot_pitch: 4096 + 64,
            total_size: 16384 + 8 * 4160,
            ..h
        }),
        ("slot_pitch", 4160)
    );
    assert_eq!(f(HeaderFixed { slot_pitch: 0, ..h }), ("slot_pitch", 0));
    // total_size must cover the last section.
    assert_eq!(
        Layout::validate(
            &HeaderFixed {
                total_size: size - 4096,
                ..h
            },
            size
        ),
        Err(LayoutError::Mismatch {
            field: "total_size",
            found: size - 4096,
            expected: size
        })
    );
    // Overflowing sections are an error, not a wrap.
    assert_eq!(
        field_error(
            &HeaderFixed {
                slot_pitch: u64::MAX / 2 + 1,
                ..h
            },
            u64::MAX
        ),
        ("gray_offset", u64::MAX)
    );
    assert_eq!(
        field_error(
            &HeaderFixed {
                gray_offset: u64::MAX - 4095,
                ..h
            },
            u64::MAX
        ),
        ("gray_offset", u64::MAX)
    );
}

/// A header whose sections are laid out non-canonically but validly (gaps
/// between sections, a larger pitch and strides) is accepted as it is:
/// consumers use the header's offsets, never recomputed ones.
#[test]
fn validate_accepts_a_non_canonical_but_sound_header() {
    let (h, _) = good();
    let odd = HeaderFixed {
        stride: 192,
        bgr_stride: 640,
        slot_table_offset: 8192,
        consumer_table_offset: 16384,
        bgr_offset: 20480,
        gray_offset: 32768,
        slot_pitch: 8192,
        total_size: 32768 + 8 * 8192,
        ..h
    };
    let l = Layout::validate(&odd, odd.total_size).unwrap();
    assert_eq!(
        (
            l.stride,
            l.bgr_stride,
            l.slot_table_offset,
            l.consumer_table_offset,
            l.bgr_offset,
            l.gray_offset,
            l.slot_pitch,
            l.total_size
        ),
        (192, 640, 8192, 16384, 20480, 32768, 8192, 98304)
    );
    assert_eq!(l.frame_len(), 1920);
    assert_eq!(l.bgr_len(), 6400);
    assert_eq!(l.gray_slot_offset(3), 32768 + 3 * 8192);
}
