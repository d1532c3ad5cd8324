//! Unit tests of `layout.rs`.
use super::*;

fn req(width: u32, height: u32) -> LayoutRequest {
    LayoutRequest {
        width,
        height,
        max_consumers: 4,
        pins_per_consumer: 1,
        format: PixelFormat::Gray8,
        significant_bits: 0,
    }
}

fn valid_header(l: &Layout) -> HeaderFixed {
    HeaderFixed {
        magic: MAGIC,
        ..l.header(1, 2, 0, 0, 0)
    }
}

#[test]
fn computed_layout_validates() {
    for (w, h) in [(1, 1), (640, 480), (1920, 1080), (3840, 2160), (16384, 1)] {
        let l = Layout::compute(req(w, h)).unwrap();
        assert_eq!(Layout::validate(&valid_header(&l), l.total_size), Ok(l));
        assert!(l.gray_offset % PAGE == 0 && l.slot_pitch % PAGE == 0);
        assert_eq!(l.slot_count, 6);
    }
}

#[test]
fn rejects_bad_geometry() {
    assert!(Layout::compute(req(0, 480)).is_err());
    assert!(Layout::compute(req(640, 0)).is_err());
    assert!(Layout::compute(req(100_000, 100_000)).is_err());
    let mut r = req(640, 480);
    r.max_consumers = 64;
    assert!(Layout::compute(r).is_err());
    r.max_consumers = 63;
    r.pins_per_consumer = 9;
    assert!(Layout::compute(r).is_err());
    // 63 consumers x 8 pins of 16384^2 frames exceeds 64 GiB.
    let huge = LayoutRequest {
        width: 16384,
        height: 16384,
        max_consumers: 63,
        pins_per_consumer: 8,
        format: PixelFormat::Gray8,
        significant_bits: 0,
    };
    assert!(matches!(
        Layout::compute(huge),
        Err(LayoutError::Field {
            field: "total_size",
            ..
        })
    ));
}

#[test]
fn rejects_truncated_and_corrupt_headers() {
    let l = Layout::compute(req(640, 480)).unwrap();
    let h = valid_header(&l);
    assert!(matches!(
        Layout::validate(&h, l.total_size - 1),
        Err(LayoutError::Truncated { .. })
    ));
    assert_eq!(
        Layout::validate(&HeaderFixed { magic: 0, ..h }, l.total_size),
        Err(LayoutError::NotReady)
    );
    assert!(matches!(
        Layout::validate(&HeaderFixed { magic: 7, ..h }, l.total_size),
        Err(LayoutError::BadMagic { .. })
    ));
    assert!(matches!(
        Layout::validate(
            &HeaderFixed {
                version: LAYOUT_VERSION + 1,
                ..h
            },
            l.total_size
        ),
        Err(LayoutError::Version { .. })
    ));
    assert!(Layout::validate(&HeaderFixed { slot_count: 5, ..h }, l.total_size).is_err());
    assert!(Layout::validate(&HeaderFixed { stride: 639, ..h }, l.total_size).is_err());
    assert!(Layout::validate(
        &HeaderFixed {
            gray_offset: h.gray_offset + 1,
            ..h
        },
        l.total_size
    )
    .is_err());
    assert!(Layout::validate(
        &HeaderFixed {
            bgr_offset: h.consumer_table_offset,
            ..h
        },
        l.total_size
    )
    .is_err());
    assert!(Layout::validate(
        &HeaderFixed {
            slot_pitch: u64::MAX / 2,
            ..h
        },
        u64::MAX
    )
    .is_err());
    assert!(Layout::validate(
        &HeaderFixed {
            total_size: h.total_size - 4096,
            ..h
        },
        l.total_size
    )
    .is_err());
}

#[test]
fn every_format_lays_out_and_validates() {
    use crate::format::ALL_FORMATS;
    for format in ALL_FORMATS {
        for (w, h) in [(1, 1), (641, 480), (1920, 1080)] {
            let l = Layout::compute(LayoutRequest {
                format,
                ..req(w, h)
            })
            .unwrap();
            let bpp = format.bytes_per_pixel();
            assert_eq!(l.stride, (w * bpp).next_multiple_of(64), "{format} {w}");
            assert_eq!(l.significant_bits, format.container_bits());
            let hdr = valid_header(&l);
            assert_eq!(hdr.pixel_format, format.code());
            assert_eq!(u32::from(hdr.channels), format.channels());
            assert_eq!(u32::from(hdr.bytes_per_pixel), bpp);
            assert_eq!(Layout::validate(&hdr, l.total_size), Ok(l));
        }
    }
    // 1920 x 1080: gray16 rows are 3840 bytes, colour rows 5760.
    let l16 = Layout::compute(LayoutRequest {
        format: PixelFormat::Gray16,
        significant_bits: 12,
        ..req(1920, 1080)
    })
    .unwrap();
    assert_eq!((l16.stride, l16.significant_bits), (3840, 12));
    assert_eq!(valid_header(&l16).significant_bits, 12);
}

#[test]
fn rejects_inconsistent_format_descriptions() {
    let l = Layout::compute(LayoutRequest {
        format: PixelFormat::Gray16,
        ..req(640, 480)
    })
    .unwrap();
    let h = valid_header(&l);
    let bad = |h: HeaderFixed| Layout::validate(&h, l.total_size).unwrap_err();
    assert!(matches!(
        bad(HeaderFixed {
            pixel_format: 0,
            ..h
        }),
        LayoutError::Field {
            field: "pixel_format",
            ..
        }
    ));
    assert!(matches!(
        bad(HeaderFixed {
            pixel_format: 5,
            ..h
        }),
        LayoutError::Field {
            field: "pixel_format",
            ..
        }
    ));
    assert!(matches!(
        bad(HeaderFixed { channels: 3, ..h }),
        LayoutError::Mismatch {
            field: "channels",
            ..
        }
    ));
    assert!(matches!(
        bad(HeaderFixed {
            bytes_per_pixel: 1,
            ..h
        }),
        LayoutError::Mismatch {
            field: "bytes_per_pixel",
            ..
        }
    ));
    for bits in [0, 17, 255] {
        assert!(matches!(
            bad(HeaderFixed {
                significant_bits: bits,
                ..h
            }),
            LayoutError::Field {
                field: "significant_bits",
                ..
            }
        ));
    }
    // A gray8 header claiming 12 significant bits.
    let l8 = Layout::compute(req(640, 480)).unwrap();
    let h8 = valid_header(&l8);
    assert!(Layout::validate(
        &HeaderFixed {
            significant_bits: 12,
            ..h8
        },
        l8.total_size
    )
    .is_err());
    // The gray8 description read as gray16: rows too short for 2 bytes a pixel.
    let as16 = HeaderFixed {
        pixel_format: 2,
        bytes_per_pixel: 2,
        significant_bits: 16,
        ..h8
    };
    assert!(matches!(
        Layout::validate(&as16, l8.total_size),
        Err(LayoutError::Field {
            field: "stride",
            ..
        })
    ));
    // An odd gray16 stride (u16 rows would be misaligned).
    let odd = HeaderFixed { stride: 1281, ..h };
    assert!(matches!(
        Layout::validate(&odd, l.total_size),
        Err(LayoutError::Field {
            field: "stride",
            ..
        })
    ));
    // Asking for 12 bits of an 8-bit format.
    assert!(Layout::compute(LayoutRequest {
        format: PixelFormat::Bgr8,
        significant_bits: 12,
        ..req(64, 64)
    })
    .is_err());
}
