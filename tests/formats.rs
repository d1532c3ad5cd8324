//! Pixel formats end to end: a producer process in each format, consumer
//! processes checking every byte, `inspect` naming the format, and a Rust
//! consumer's typed views of frames from a producer process.

mod common;

use std::time::Duration;

use common::{u, Bus};
use framebus_consumer::{Consumer, ConsumerConfig, FormatError};
use shm_layout::pattern::{encode_level, Pattern};
use shm_layout::{BusName, PixelFormat};

const T: Duration = Duration::from_secs(30);

/// Every format (gray16 with 16 and with 12 significant bits): `inspect`
/// reports the header's description and a `verify` consumer process finds
/// every byte of 40 frames right.
#[test]
fn every_format_is_verified_byte_for_byte_across_processes() {
    let cases: [(&str, Option<&str>, u64, u64); 5] = [
        ("gray8", None, 1, 8),
        ("gray16", None, 2, 16),
        ("gray16", Some("12"), 2, 12),
        ("bgr8", None, 3, 8),
        ("rgb8", None, 3, 8),
    ];
    for (format, bits, bpp, significant) in cases {
        let mut bus = Bus::new(&format!("fmt-{format}"));
        // An odd width: rows are padded differently in every format.
        let mut args = vec!["--size", "161x120", "--fps", "200", "--format", format];
        if let Some(b) = bits {
            args.extend(["--bits", b]);
        }
        let _producer = bus.producer(&args);
        let g = &bus.inspect()["geometry"];
        assert_eq!(g["pixel_format"], format, "{g}");
        assert_eq!(u(&g["bytes_per_pixel"]), bpp, "{g}");
        assert_eq!(u(&g["channels"]), if bpp == 3 { 3 } else { 1 }, "{g}");
        assert_eq!(u(&g["significant_bits"]), significant, "{g}");
        assert_eq!(u(&g["stride"]), (161 * bpp).next_multiple_of(64), "{g}");
        let mut verify = bus.consumer(&["--algo", "verify", "--frames", "40", "--json"]);
        let mut mean = bus.consumer(&["--algo", "mean", "--frames", "10", "--json"]);
        let s = verify.last_json(T);
        assert_eq!(u(&s["bad_frames"]), 0, "{format}: {s}");
        assert_eq!(u(&s["frames"]), 40, "{format}: {s}");
        let m = mean.last_json(T);
        assert_eq!(u(&m["frames"]), 10, "{format}: {m}");
        let (status, out, _) = bus.run(&["inspect", "--bus", &bus.name]);
        assert!(status.success());
        let shown = match bits {
            Some(b) => format!("161x120 {format} ({b}-bit)"),
            None => format!("161x120 {format},"),
        };
        assert!(out.contains(&shown), "inspect shows {shown:?}: {out}");
    }
}

/// Bad `--format` and `--bits` are refused before any bus exists, saying
/// what would be accepted.
#[test]
fn bad_format_arguments_are_refused_clearly() {
    let bus = Bus::new("fmt-bad");
    let (status, _, err) = bus.run(&["produce", "--bus", &bus.name, "--format", "yuv422"]);
    assert!(!status.success());
    assert!(err.contains("gray8, gray16, bgr8 or rgb8"), "{err}");
    let (status, _, err) = bus.run(&[
        "produce", "--bus", &bus.name, "--format", "bgr8", "--bits", "12",
    ]);
    assert!(!status.success());
    assert!(err.contains("--bits applies to --format gray16"), "{err}");
    let (status, _, err) = bus.run(&[
        "produce", "--bus", &bus.name, "--format", "gray16", "--bits", "17",
    ]);
    assert!(!status.success());
    assert!(err.contains("17"), "{err}");
    assert!(!bus.shm_path().exists());
}

fn attach(bus: &Bus) -> Consumer {
    let name = BusName::new(&bus.name).expect("bus name");
    Consumer::attach(ConsumerConfig::new(name)).expect("attach")
}

/// The gray frame of `seq` (the pattern every format encodes).
fn gray(seq: u64, w: u32, h: u32) -> Vec<u8> {
    let mut buf = vec![0u8; (w * h) as usize];
    Pattern::new(w).fill(seq, &mut buf, w as usize, h);
    buf
}

/// A Rust consumer's typed views of a gray16 (12-bit) producer process's
/// frames: `u16` rows holding the encoded pattern, no triples, `to_rgb`
/// scaled from 12 bits.
#[test]
fn gray16_frames_are_u16_rows() {
    let (w, h) = (64u32, 48u32);
    let mut bus = Bus::new("fmt-u16");
    let _p = bus.producer(&[
        "--size", "64x48", "--fps", "100", "--format", "gray16", "--bits", "12",
    ]);
    let mut c = attach(&bus);
    let f = c.next_frame(Some(T)).expect("next").expect("a frame");
    assert_eq!(f.format(), PixelFormat::Gray16);
    assert_eq!(f.significant_bits(), 12);
    assert_eq!(f.view().format, PixelFormat::Gray16);
    let want = gray(f.seq(), w, h);
    let rows = f.as_u16().expect("gray16 rows");
    for y in 0..h {
        let expected: Vec<u16> = want[(y * w) as usize..((y + 1) * w) as usize]
            .iter()
            .map(|&v| {
                u16::from_le_bytes([
                    encode_level(PixelFormat::Gray16, 12, v)[0],
                    encode_level(PixelFormat::Gray16, 12, v)[1],
                ])
            })
            .collect();
        assert_eq!(rows.row(y), expected.as_slice(), "row {y}");
        assert!(rows.row(y).iter().all(|&v| v <= 4095));
    }
    assert_eq!(f.rows_u16().expect("rows").count(), h as usize);
    assert!(matches!(
        f.row_triples(0),
        Err(FormatError::WrongFormat { .. })
    ));
    let rgb = f.to_rgb();
    assert_eq!(rgb.len(), (w * h * 3) as usize);
    let v = rows.row(0)[0];
    assert_eq!(rgb[..3], [(v >> 4) as u8; 3]);
}

/// bgr8 and rgb8 producer processes: pixel triples in each byte order, and
/// `to_rgb` gives the same picture for both.
#[test]
fn colour_frames_are_triples_and_agree_in_rgb() {
    let (w, h) = (40u32, 30u32);
    for (format, pf) in [("bgr8", PixelFormat::Bgr8), ("rgb8", PixelFormat::Rgb8)] {
        let mut bus = Bus::new(&format!("fmt-{format}-tri"));
        let _p = bus.producer(&["--size", "40x30", "--fps", "100", "--format", format]);
        let mut c = attach(&bus);
        let f = c.next_frame(Some(T)).expect("next").expect("a frame");
        assert_eq!(f.format(), pf);
        assert!(matches!(f.as_u16(), Err(FormatError::WrongFormat { .. })));
        let want = gray(f.seq(), w, h);
        for y in 0..h {
            let row = f.row_triples(y).expect("triples");
            assert_eq!(row.len(), w as usize);
            for (x, px) in row.iter().enumerate() {
                let v = want[(y * w) as usize + x];
                assert_eq!(*px, encode_level(pf, 8, v), "{format} ({x}, {y})");
            }
        }
        // The same colour whatever the byte order: (v, 255 - v, v + 128).
        let rgb = f.to_rgb();
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            let v = want[i];
            assert_eq!(px, [v, 255 - v, v.wrapping_add(128)], "{format} px {i}");
        }
    }
}

/// `examples/custom_source.rs` (a user's own `FrameSource`, a mono12
/// camera in a gray16 bus) publishes frames a consumer process reads.
#[test]
fn the_custom_source_example_publishes_mono12() {
    // `cargo test` builds the examples beside the test binaries' directory.
    let exe = std::env::current_exe().expect("test binary path");
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join("custom_source"))
        .expect("target directory");
    assert!(example.is_file(), "{} not built", example.display());
    let mut bus = Bus::new("fmt-example");
    let mut cmd = std::process::Command::new(&example);
    cmd.args([bus.name.as_str(), "100000"])
        .env("FRAMEBUS_RUNTIME_DIR", &bus.root);
    let mut p = bus.spawn_command(cmd);
    let ready = p.expect_line(&format!("ready bus={}", bus.name), T);
    assert!(ready.contains("640x480 gray16 (12 bits)"), "{ready}");
    let g = &bus.inspect()["geometry"];
    assert_eq!(
        (g["pixel_format"].as_str(), u(&g["significant_bits"])),
        (Some("gray16"), 12)
    );
    let mut c = bus.consumer(&["--algo", "mean", "--frames", "5", "--json"]);
    let s = c.last_json(T);
    assert_eq!(u(&s["frames"]), 5, "{s}");
}
