//! `framebus snapshot` and the debug BGR slot's seqlock, in the default
//! build (no OpenCV): the gray snapshot of a fake-camera bus against the
//! fake pattern, the clear errors, and the seqlock reader against a
//! producer rewriting the BGR slot as fast as it can. The BGR snapshot of a
//! real video is in tests/video.rs (feature `opencv`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::in_process::InProcess;
use common::{u, Bus};
use framebus_consumer::{copy_latest_frame, read_bgr, BgrError, CopyError};
use framebus_producer::{Captured, FrameSource, Producer, ProducerConfig, SlotWriter, SourceError};
use shm_layout::pattern::Pattern;

const T: Duration = Duration::from_secs(30);

/// Decodes a PNG: (width, height, color type, pixels, tEXt chunks).
fn decode_png(path: &Path) -> (u32, u32, png::ColorType, Vec<u8>, Vec<(String, String)>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    buf.truncate(info.buffer_size());
    let texts = reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect();
    (info.width, info.height, info.color_type, buf, texts)
}

/// `seq=N width=W height=H file=PATH` → N, W, H.
fn parse_line(line: &str) -> (u64, u32, u32) {
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {line:?}"))
            .to_owned()
    };
    (
        field("seq=").parse().expect("seq"),
        field("width=").parse().expect("width"),
        field("height=").parse().expect("height"),
    )
}

fn out_path(bus: &Bus, name: &str) -> PathBuf {
    bus.root.join(name)
}

/// The gray snapshot of a fake-camera bus is, pixel for pixel, the fake
/// pattern of the frame's seq (printed on stdout and stored in the PNG).
/// 100 is not a multiple of 64: the stride padding must not leak in.
#[test]
fn snapshot_of_fake_bus_equals_the_pattern_of_its_seq() {
    let mut bus = Bus::new("snap");
    bus.producer(&["--size", "100x40", "--fps", "100"]);
    let png = out_path(&bus, "gray.png");
    for _ in 0..3 {
        let (status, out, err) =
            bus.run(&["snapshot", "--bus", &bus.name, "-o", png.to_str().unwrap()]);
        assert!(status.success(), "snapshot failed: {err}");
        let (seq, w, h) = parse_line(out.trim());
        assert!(seq >= 1);
        assert_eq!((w, h), (100, 40));
        let (pw, ph, color, pixels, texts) = decode_png(&png);
        assert_eq!((pw, ph, color), (100, 40, png::ColorType::Grayscale));
        assert!(
            texts.contains(&("framebus-seq".to_owned(), seq.to_string())),
            "{texts:?}"
        );
        Pattern::new(100)
            .verify(seq, &pixels, 100, 40)
            .unwrap_or_else(|e| panic!("frame {seq} differs from the pattern: {e:?}"));
        // And not the pattern of its neighbours.
        assert!(Pattern::new(100).verify(seq + 1, &pixels, 100, 40).is_err());
    }
    // The snapshot took a consumer entry for an instant and gave it back.
    let v = bus.wait_for("the snapshot's entry to be freed", T, |v| {
        v["consumers"].as_array().is_some_and(Vec::is_empty)
    });
    assert!(u(&v["producer"]["frames_published"]) >= 1, "{v}");
}

/// A 12-bit camera-like bus (gray16, 12 significant bits) round-trips
/// through `snapshot` to a 16-bit grayscale PNG holding exactly its values
/// (PNG stores them big-endian), with its format and bits in tEXt chunks;
/// bgr8 and rgb8 buses become the same RGB PNG.
#[test]
fn gray16_and_colour_buses_snapshot_to_16_bit_and_rgb_pngs() {
    use shm_layout::PixelFormat;
    let mut bus = Bus::new("snap16");
    let _producer = bus.producer(&[
        "--size", "100x40", "--fps", "100", "--format", "gray16", "--bits", "12",
    ]);
    let png = out_path(&bus, "mono12.png");
    let (status, out, err) = bus.run(&[
        "snapshot",
        "--bus",
        &bus.name,
        "-o",
        png.to_str().unwrap(),
        "--json",
    ]);
    assert!(status.success(), "snapshot failed: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(
        (v["format"].as_str(), u(&v["png_bits"])),
        (Some("gray16"), 16),
        "{v}"
    );
    let seq = u(&v["seq"]);
    let file = std::fs::File::open(&png).expect("open png");
    let reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("PNG header");
    assert_eq!(reader.info().bit_depth, png::BitDepth::Sixteen);
    let (w, h, color, be, texts) = decode_png(&png);
    assert_eq!((w, h, color), (100, 40, png::ColorType::Grayscale));
    for (k, want) in [
        ("framebus-format", "gray16"),
        ("framebus-significant-bits", "12"),
    ] {
        assert!(
            texts.contains(&(k.to_owned(), want.to_owned())),
            "{texts:?}"
        );
    }
    // Big-endian samples back to the slot's little-endian bytes.
    let le: Vec<u8> = be.chunks_exact(2).flat_map(|b| [b[1], b[0]]).collect();
    assert!(le
        .chunks_exact(2)
        .all(|b| u16::from_le_bytes([b[0], b[1]]) <= 4095));
    Pattern::with_format(100, PixelFormat::Gray16, 12)
        .verify(seq, &le, 200, 40)
        .unwrap_or_else(|e| panic!("frame {seq} differs from the 12-bit pattern: {e:?}"));

    for format in ["bgr8", "rgb8"] {
        let mut bus = Bus::new(&format!("snap-{format}"));
        bus.producer(&["--size", "100x40", "--fps", "100", "--format", format]);
        let png = out_path(&bus, "colour.png");
        let (status, out, err) =
            bus.run(&["snapshot", "--bus", &bus.name, "-o", png.to_str().unwrap()]);
        assert!(status.success(), "snapshot failed: {err}");
        let (seq, _, _) = parse_line(out.trim());
        let (w, h, color, rgb, _) = decode_png(&png);
        assert_eq!((w, h, color), (100, 40, png::ColorType::Rgb), "{format}");
        // R, G, B in the PNG whatever the bus's byte order: the rgb8 pattern.
        Pattern::with_format(100, PixelFormat::Rgb8, 0)
            .verify(seq, &rgb, 300, 40)
            .unwrap_or_else(|e| panic!("{format} frame {seq} differs: {e:?}"));
    }
}

/// `snapshot` on a full bus under fire: the producer is unpaced (it
/// rewrites every slot but the newest one as fast as it can) and its one
/// consumer entry is taken, so every snapshot copies without a pin while
/// slots are rewritten under it. Each one that succeeds is one whole frame
/// of the fake pattern, its seq's; one may give up after 64 overlapped
/// copies (a clear error, counted), but never writes a torn frame.
#[test]
fn full_bus_snapshots_of_an_unpaced_producer_are_whole() {
    let mut bus = Bus::new("snapfullfast");
    bus.producer(&["--size", "100x40", "--fps", "0", "--max-consumers", "1"]);
    let holder = bus.consumer(&["--name", "holder"]);
    let png = out_path(&bus, "fast.png");
    let (mut whole, mut too_fast) = (0, 0);
    for _ in 0..20 {
        let _ = std::fs::remove_file(&png);
        let (status, out, err) =
            bus.run(&["snapshot", "--bus", &bus.name, "-o", png.to_str().unwrap()]);
        assert!(err.contains("without an entry"), "not the fallback: {err}");
        if !status.success() {
            assert!(err.contains("rewrote the newest frame's slot"), "{err}");
            assert!(!png.exists(), "a failed snapshot wrote {}", png.display());
            too_fast += 1;
            continue;
        }
        let (seq, _, _) = parse_line(out.trim());
        let (_, _, _, pixels, _) = decode_png(&png);
        Pattern::new(100)
            .verify(seq, &pixels, 100, 40)
            .unwrap_or_else(|e| panic!("torn snapshot of frame {seq}: {e:?}"));
        whole += 1;
    }
    assert!(whole > 0, "every snapshot gave up ({too_fast})");
    holder.signal(rustix::process::Signal::TERM);
    assert!(bus.wait(&holder, T).success());
}

#[test]
fn snapshot_json_names_the_frame() {
    let mut bus = Bus::new("snapjson");
    bus.producer(&["--size", "64x16", "--fps", "100"]);
    let png = out_path(&bus, "j.png");
    let (status, out, err) = bus.run(&[
        "snapshot",
        "--bus",
        &bus.name,
        "-o",
        png.to_str().unwrap(),
        "--json",
    ]);
    assert!(status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!((u(&v["width"]), u(&v["height"])), (64, 16), "{v}");
    assert_eq!(v["bgr"], false);
    let (_, _, _, pixels, _) = decode_png(&png);
    Pattern::new(64)
        .verify(u(&v["seq"]), &pixels, 64, 16)
        .expect("pattern");
}

/// Bad inputs: a clear message, exit != 0, no panic, no file left.
#[test]
fn snapshot_errors_are_clear() {
    let mut bus = Bus::new("snaperr");
    let png = out_path(&bus, "none.png");
    let p = png.to_str().unwrap().to_owned();
    fn check(bus: &Bus, args: &[&str], expect: &str) {
        let (status, out, err) = bus.run(args);
        assert!(!status.success(), "{args:?} succeeded: {out}");
        assert!(
            err.contains(expect),
            "{args:?}: expected {expect:?} in: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    let name = bus.name.clone();
    check(
        &bus,
        &["snapshot", "--bus", &name, "-o", &p],
        "no bus named",
    );
    assert!(!png.exists(), "a failed snapshot left {}", png.display());
    bus.producer(&["--size", "64x16", "--fps", "100"]);
    // The fake camera runs without --debug-bgr: no BGR frame to take.
    check(
        &bus,
        &["snapshot", "--bus", &name, "-o", &p, "--bgr"],
        "without --debug-bgr",
    );
    assert!(!png.exists());
    let missing_dir = bus.root.join("no-such-dir").join("x.png");
    check(
        &bus,
        &[
            "snapshot",
            "--bus",
            &name,
            "-o",
            missing_dir.to_str().unwrap(),
        ],
        "cannot write",
    );
    check(
        &bus,
        &["snapshot", "--bus", "bad/name", "-o", &p],
        "bad --bus",
    );
    check(
        &bus,
        &["snapshot", "--bus", &name, "-o", &p, "--timeout", "0"],
        "not a duration",
    );
}

// ------------------------------------------------ the seqlock, in-process

/// A colour source whose frame `seq` is uniform: every pixel is
/// (B, G, R) = (seq, seq + 1, seq + 2) mod 256, and its gray frame is
/// `seq` mod 256 everywhere.
struct UniformColour {
    width: u32,
    height: u32,
    bgr: Vec<u8>,
}

impl UniformColour {
    fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            bgr: vec![0; 3 * width as usize * height as usize],
        }
    }
}

impl FrameSource for UniformColour {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn fill(&mut self, seq: u64, slot: &mut SlotWriter<'_>) -> Result<Captured, SourceError> {
        let s = seq as u8;
        slot.data().fill(s);
        for px in self.bgr.chunks_exact_mut(3) {
            px.copy_from_slice(&[s, s.wrapping_add(1), s.wrapping_add(2)]);
        }
        let row = 3 * self.width as usize;
        if let Some(bgr) = slot.debug_bgr() {
            assert_eq!(bgr.seq(), seq);
            bgr.write(&self.bgr, row, seq * 10)?;
        }
        Ok(Captured {
            capture_ns: seq * 10,
        })
    }
}

fn check_uniform(frame: &framebus_consumer::BgrFrame) {
    let s = frame.seq as u8;
    let want = [s, s.wrapping_add(1), s.wrapping_add(2)];
    for (i, px) in frame.pixels.chunks_exact(3).enumerate() {
        assert_eq!(px, want, "pixel {i} of BGR frame {} is torn", frame.seq);
    }
    assert_eq!(frame.capture_ns, frame.seq * 10);
}

/// The reader's errors: no BGR slot on a bus created without debug_bgr;
/// "nothing written yet" on one whose producer has published nothing.
#[test]
fn read_bgr_names_what_is_missing() {
    let t = InProcess::new("snap", "bgrmissing");
    {
        let _p = Producer::create(ProducerConfig::new(t.bus.clone()), 32, 8).expect("producer");
        let e = read_bgr(&t.bus, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(e, BgrError::NotEnabled { .. }), "{e}");
        assert!(e.to_string().contains("--debug-bgr"), "{e}");
    }
    let config = ProducerConfig {
        debug_bgr: true,
        ..ProducerConfig::new(t.bus.clone())
    };
    let mut p = Producer::create(config, 32, 8).expect("producer");
    let e = read_bgr(&t.bus, Duration::from_millis(50)).unwrap_err();
    assert!(matches!(e, BgrError::NotWrittenYet { .. }), "{e}");
    let mut src = UniformColour::new(32, 8);
    let seq = p.publish(|seq, slot| src.fill(seq, slot)).expect("publish");
    let frame = read_bgr(&t.bus, Duration::from_secs(5)).expect("BGR frame");
    assert_eq!((frame.width, frame.height, frame.seq), (32, 8, seq));
    assert_eq!(frame.instance_id, p.instance_id());
    check_uniform(&frame);
    assert_eq!(frame.pixel(31, 7), [1, 2, 3]);
    drop(p);
    let e = read_bgr(&t.bus, Duration::from_millis(50)).unwrap_err();
    assert!(e.to_string().contains("no bus named"), "{e}");
}

/// `copy_latest_frame` (the full-bus fallback of `snapshot`) in-process:
/// no bus, no frame yet, then the newest frame's bytes and stamps, and no
/// consumer entry taken.
#[test]
fn copy_latest_frame_copies_the_newest_frame_without_an_entry() {
    let t = InProcess::new("snap", "copylatest");
    let e = copy_latest_frame(&t.bus, Duration::from_millis(50)).unwrap_err();
    assert!(e.to_string().contains("no bus named"), "{e}");
    let mut p = Producer::create(ProducerConfig::new(t.bus.clone()), 32, 8).expect("producer");
    let e = copy_latest_frame(&t.bus, Duration::from_millis(50)).unwrap_err();
    assert!(matches!(e, CopyError::NoFrameYet { .. }), "{e}");
    let mut src = UniformColour::new(32, 8);
    for _ in 0..3 {
        p.publish(|seq, slot| src.fill(seq, slot)).expect("publish");
    }
    let frame = copy_latest_frame(&t.bus, Duration::from_secs(5)).expect("a copy");
    assert_eq!(frame.seq(), 3);
    assert_eq!((frame.width(), frame.height()), (32, 8));
    assert_eq!(frame.capture_ns(), 30);
    assert_eq!(frame.instance_id(), p.instance_id());
    let view = frame.view();
    for y in 0..8 {
        assert!(view.row(y).iter().all(|&b| b == 3), "row {y}");
    }
    let snap = framebus_consumer::inspect(&t.bus).expect("inspect");
    assert!(snap.consumers.is_empty(), "the copy took an entry");
    drop(p);
    let e = copy_latest_frame(&t.bus, Duration::from_millis(50)).unwrap_err();
    assert!(e.to_string().contains("no bus named"), "{e}");
}

/// The seqlock under fire: a producer thread rewrites the BGR slot as fast
/// as it can while this thread copies it again and again. Every copy the
/// reader accepts is one whole frame (uniform, stamped with its own seq),
/// never parts of two; the frames go forward. 100 * 3 = 300 bytes per row
/// is not a multiple of 8, so rows end in a partial word.
#[test]
fn bgr_copies_are_never_torn() {
    let t = InProcess::new("snap", "bgrtorn");
    let config = ProducerConfig {
        debug_bgr: true,
        ..ProducerConfig::new(t.bus.clone())
    };
    let (w, h) = (100, 300);
    let mut producer = Producer::create(config, w, h).expect("producer");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut src = UniformColour::new(w, h);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                producer
                    .publish(|seq, slot| src.fill(seq, slot))
                    .expect("publish");
                n += 1;
            }
            n
        })
    };
    let deadline = Instant::now() + T;
    let mut last = 0;
    let mut reads = 0;
    let mut too_fast = 0;
    while reads < 300 && Instant::now() < deadline {
        match read_bgr(&t.bus, Duration::from_secs(5)) {
            Ok(frame) => {
                check_uniform(&frame);
                assert!(frame.seq >= last, "BGR frame {} after {last}", frame.seq);
                last = frame.seq;
                reads += 1;
            }
            // Possible in principle on a very loaded machine; counted.
            Err(BgrError::TooFast { .. }) => too_fast += 1,
            Err(e) => panic!("read_bgr: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let published = writer.join().expect("writer thread");
    assert_eq!(
        reads, 300,
        "only {reads} copies in {T:?} ({too_fast} refused as too fast)"
    );
    assert!(
        published > 300,
        "the writer published only {published} frames"
    );
    assert!(too_fast < 30, "{too_fast} reads gave up");
}
