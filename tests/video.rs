//! Video and camera sources. No camera exists here, so the tests write
//! their own videos with OpenCV's `VideoWriter` (the built-in MJPEG
//! backend, .avi: no FFmpeg needed to write) and feed them to
//! `framebus produce --source video:...`.
//!
//! - Always: a source whose frames change size mid-stream makes
//!   `run_source` re-create the bus (new instance id); a consumer re-attaches
//!   by itself and never sees a frame with the wrong geometry. Without the
//!   `opencv` feature, cameras and videos are a clear error that says how
//!   to build with it.
//! - With `--features opencv`: frames arrive in order with the file's
//!   geometry and content, pacing, `--loop`, `snapshot --bgr` colours, and
//!   the bad inputs (no such camera, missing, unreadable or empty file, a
//!   directory, an audio-only file); bgr8 and rgb8 buses from a lossless
//!   colour video in their channel order; gray16 refused from an 8-bit
//!   video, and filled unchanged from a 16-bit capture (PNG sequence).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::in_process::{InProcess, StopOnDrop};
use framebus_consumer::{Consumer, ConsumerConfig};
use framebus_producer::{
    run_source, Captured, FrameSource, ProducerConfig, RunOptions, SlotWriter, SourceError,
};

const T: Duration = Duration::from_secs(30);

// --------------------------------------------- in-process harness

// ------------------------------------------- geometry change (always)

/// A camera that switches resolution when told: frames of `first` until
/// `switch` is set, then of `second`. Every byte of frame `seq` of width
/// `w` is `seq + w` (mod 256), so a frame read with the wrong geometry —
/// or written into a slot of the wrong one — does not check out.
struct SwitchingCamera {
    size: (u32, u32),
    second: (u32, u32),
    switch: Arc<AtomicBool>,
}

fn pixel_value(seq: u64, width: u32) -> u8 {
    (seq as u8).wrapping_add(width as u8)
}

impl FrameSource for SwitchingCamera {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn fill(&mut self, seq: u64, slot: &mut SlotWriter<'_>) -> Result<Captured, SourceError> {
        if self.switch.load(Ordering::Relaxed) && self.size != self.second {
            self.size = self.second;
            let (width, height) = self.size;
            return Err(SourceError::GeometryChanged { width, height });
        }
        assert_eq!(
            (slot.width(), slot.height()),
            self.size,
            "a slot of the wrong geometry"
        );
        let (w, stride) = (slot.width() as usize, slot.stride() as usize);
        let v = pixel_value(seq, slot.width());
        for row in slot.data().chunks_mut(stride) {
            row[..w].fill(v);
        }
        Ok(Captured { capture_ns: 0 })
    }
}

/// The camera's resolution changes mid-stream: the bus is re-created with
/// a new instance id, the consumer re-attaches by itself, and every frame
/// it reads has the geometry it was written with.
#[test]
fn geometry_change_recreates_the_bus_and_consumers_follow() {
    let t = InProcess::new("video", "resize");
    let switch = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(Arc::clone(&stop));
    let (first, second) = ((64, 48), (96, 40));
    let (tx, rx) = std::sync::mpsc::channel();
    let producer = {
        let (switch, stop, bus) = (Arc::clone(&switch), Arc::clone(&stop), t.bus.clone());
        std::thread::spawn(move || {
            let mut cam = SwitchingCamera {
                size: first,
                second,
                switch,
            };
            let opts = RunOptions {
                fps: Some(200.0),
                ..Default::default()
            };
            run_source(ProducerConfig::new(bus), &mut cam, opts, &stop, |p| {
                let l = p.layout();
                let _ = tx.send((p.instance_id(), l.width, l.height));
            })
        })
    };
    let (first_instance, w, h) = rx.recv_timeout(T).expect("the first bus");
    assert_eq!((w, h), first);
    let mut consumer =
        Consumer::attach_wait(ConsumerConfig::new(t.bus.clone()), T).expect("attach");
    let deadline = Instant::now() + T;
    let mut seen: Vec<(u64, u32, u32)> = Vec::new(); // (instance, w, h)
    while Instant::now() < deadline {
        let Some(frame) = consumer
            .next_frame(Some(Duration::from_millis(200)))
            .expect("next_frame")
        else {
            continue;
        };
        let (fw, fh) = (frame.width(), frame.height());
        let v = pixel_value(frame.seq(), fw);
        for y in 0..fh {
            assert!(
                frame.row(y).iter().all(|&p| p == v),
                "frame {} ({fw}x{fh}) row {y} was not written with this geometry",
                frame.seq()
            );
        }
        seen.push((frame.instance_id(), fw, fh));
        let at_first = seen.iter().filter(|s| (s.1, s.2) == first).count();
        let at_second = seen.iter().filter(|s| (s.1, s.2) == second).count();
        if at_first >= 5 {
            switch.store(true, Ordering::Relaxed);
        }
        if at_second >= 5 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (second_instance, w, h) = rx.recv_timeout(T).expect("a second bus");
    assert_eq!((w, h), second);
    assert_ne!(
        second_instance, first_instance,
        "the re-created bus needs a new instance id"
    );
    for (instance, fw, fh) in &seen {
        let want = if *instance == first_instance {
            first
        } else {
            second
        };
        assert_eq!((*fw, *fh), want, "a frame of instance {instance:x}");
    }
    assert!(
        seen.iter().filter(|s| s.0 == second_instance).count() >= 5,
        "the consumer did not follow the bus to its new size: {seen:?}"
    );
    assert_eq!(consumer.reattached(), 1);
    let stats = producer
        .join()
        .expect("producer thread")
        .expect("run_source");
    assert!(stats.frames >= 10, "{stats:?}");
}

// ---------------------------------------------- without OpenCV

#[cfg(not(feature = "opencv"))]
#[test]
fn cameras_and_videos_need_the_opencv_feature() {
    let bus = common::Bus::new("noopencv");
    for source in ["camera:0", "video:/tmp/whatever.avi"] {
        let (status, _, err) = bus.run(&["produce", "--bus", &bus.name, "--source", source]);
        assert!(!status.success());
        assert!(
            err.contains("cargo build --release --features opencv"),
            "{err}"
        );
        assert!(
            err.contains("apt-get install libopencv-dev clang libclang-dev"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(!bus.shm_path().exists());
    }
}

/// The pixel-format tests read videos and image sequences through OpenCV.
#[cfg(not(feature = "opencv"))]
#[test]
fn pixel_format_tests_need_the_opencv_feature() {
    for test in [
        "video_fills_bgr8_and_rgb8_slots_in_their_channel_order",
        "an_8_bit_video_into_a_gray16_bus_is_refused",
        "a_16_bit_capture_fills_gray16_slots_with_its_values_unchanged",
    ] {
        common::skip(
            test,
            "needs --features opencv (OpenCV reads the test videos)",
        );
    }
}

// ------------------------------------------------- with OpenCV

#[cfg(feature = "opencv")]
mod with_opencv {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use framebus_consumer::{Consumer, ConsumerConfig, Frame};
    use framebus_producer::opencv::core::{Mat, Rect, Scalar, Size, CV_8UC3};
    use framebus_producer::opencv::prelude::*;
    use framebus_producer::opencv::videoio::{VideoWriter, CAP_FFMPEG, CAP_OPENCV_MJPEG};
    use shm_layout::{BusName, PixelFormat};

    use super::common::{f, u, Bus};
    use super::T;

    const W: u32 = 320;
    const H: u32 = 240;
    /// The top half of a frame: 8 horizontal bands, band b bright if bit b
    /// of the frame index is set. JPEG keeps large flat bands within a few
    /// levels.
    const BANDS: u32 = 8;
    const DARK: u8 = 25;
    const BRIGHT: u8 = 230;
    /// The bottom half: pure blue, green and red thirds (BGR order).
    const COLOURS: [[u8; 3]; 3] = [[255, 0, 0], [0, 255, 0], [0, 0, 255]];
    /// Tolerance for MJPEG on flat areas sampled at their centres.
    const TOL: i32 = 40;

    fn band_height(h: u32) -> u32 {
        h / 2 / BANDS
    }

    /// Frame `i` of a test video of `w` x `h`.
    fn test_frame(w: u32, h: u32, i: u32) -> Mat {
        let mut m =
            Mat::new_rows_cols_with_default(h as i32, w as i32, CV_8UC3, Scalar::all(128.0))
                .expect("Mat");
        let bh = band_height(h) as i32;
        for b in 0..BANDS {
            let v = if (i >> b) & 1 == 1 { BRIGHT } else { DARK };
            let mut roi =
                Mat::roi_mut(&mut m, Rect::new(0, b as i32 * bh, w as i32, bh)).expect("roi");
            roi.set_to_def(&Scalar::all(f64::from(v))).expect("set_to");
        }
        let cw = (w / 3) as i32;
        for (k, c) in COLOURS.iter().enumerate() {
            let rect = Rect::new(k as i32 * cw, (h / 2) as i32, cw, (h - h / 2) as i32);
            let mut roi = Mat::roi_mut(&mut m, rect).expect("roi");
            let colour = Scalar::new(f64::from(c[0]), f64::from(c[1]), f64::from(c[2]), 0.0);
            roi.set_to_def(&colour).expect("set_to");
        }
        m
    }

    /// Writes `frames` frames of W x H at `fps` into `dir/name` (MJPEG
    /// .avi, with OpenCV's own encoder).
    fn write_video(dir: &Path, name: &str, frames: u32, fps: f64) -> PathBuf {
        write_video_sized(dir, name, (W, H), 0..frames, fps)
    }

    /// Writes frames `indices` of `size` at `fps` into `dir/name`.
    fn write_video_sized(
        dir: &Path,
        name: &str,
        size: (u32, u32),
        indices: std::ops::Range<u32>,
        fps: f64,
    ) -> PathBuf {
        let (w, h) = size;
        let path = dir.join(name);
        let fourcc = VideoWriter::fourcc('M', 'J', 'P', 'G').expect("fourcc");
        let mut writer = VideoWriter::new_with_backend(
            path.to_str().expect("utf-8 path"),
            CAP_OPENCV_MJPEG,
            fourcc,
            fps,
            Size::new(w as i32, h as i32),
            true,
        )
        .expect("VideoWriter");
        assert!(
            writer.is_opened().expect("is_opened"),
            "cannot write {}",
            path.display()
        );
        for i in indices {
            writer.write(&test_frame(w, h, i)).expect("write frame");
        }
        writer.release().expect("release");
        path
    }

    /// The frame index a gray frame encodes, after checking its bands and
    /// colour blocks are within the codec's tolerance of what was written
    /// (a frame read with the wrong geometry fails these checks).
    fn decode_index(frame: &Frame<'_>) -> u32 {
        let (w, h) = (frame.width(), frame.height());
        let bh = band_height(h);
        let mut index = 0;
        for b in 0..BANDS {
            let v = frame.row(b * bh + bh / 2)[w as usize / 2];
            let bit = v > 128;
            let want = if bit { BRIGHT } else { DARK };
            assert!(
                (i32::from(v) - i32::from(want)).abs() <= TOL,
                "band {b}: {v}"
            );
            if bit {
                index |= 1 << b;
            }
        }
        let row = frame.row(h * 3 / 4);
        let cw = (w / 3) as usize;
        for (k, [b, g, r]) in COLOURS.iter().enumerate() {
            // BT.601 luma, as cvtColor computes it.
            let want = (0.114 * f64::from(*b) + 0.587 * f64::from(*g) + 0.299 * f64::from(*r))
                .round() as i32;
            let got = i32::from(row[k * cw + cw / 2]);
            assert!(
                (got - want).abs() <= TOL,
                "colour block {k}: gray {got}, want {want}"
            );
        }
        index
    }

    /// A consumer in this process reads the video's frames, checking each
    /// one, until the producer ends; returns (seq, index) of every frame.
    fn consume_all(bus: &str, expect_index: impl Fn(u64) -> u32) -> Vec<(u64, u32)> {
        let name = BusName::new(bus).expect("bus name");
        let mut consumer = Consumer::attach_wait(ConsumerConfig::new(name), T).expect("attach");
        let deadline = Instant::now() + T;
        let mut got = Vec::new();
        while Instant::now() < deadline && consumer.reattached() == 0 {
            let Some(frame) = consumer
                .next_frame(Some(Duration::from_millis(100)))
                .expect("next_frame")
            else {
                if !got.is_empty() && consumer.info().is_none() {
                    break; // the producer ended and is gone
                }
                continue;
            };
            assert_eq!((frame.width(), frame.height()), (W, H), "geometry");
            let index = decode_index(&frame);
            assert_eq!(
                index,
                expect_index(frame.seq()),
                "frame seq {} holds video frame {index}",
                frame.seq()
            );
            got.push((frame.seq(), index));
        }
        got
    }

    /// The video's frames arrive in order, with the file's geometry and
    /// content, and the producer publishes every frame of the file.
    #[test]
    fn video_frames_arrive_in_order_with_their_content() {
        let mut bus = Bus::new("video");
        let video = write_video(&bus.root, "count.avi", 60, 25.0);
        let name = bus.name.clone();
        let mut producer = bus.producer(&[
            "--source",
            &format!("video:{}", video.display()),
            "--fps",
            "60",
            "--json",
        ]);
        let got = consume_all(&name, |seq| (seq - 1) as u32);
        assert!(
            got.len() >= 30,
            "only {} of 60 frames reached the consumer: {got:?}",
            got.len()
        );
        assert!(
            got.windows(2).all(|p| p[0].0 < p[1].0),
            "out of order: {got:?}"
        );
        let summary = producer.last_json(T);
        assert_eq!(u(&summary["frames"]), 60, "{summary}");
        assert_eq!(
            (u(&summary["width"]), u(&summary["height"])),
            (W.into(), H.into())
        );
        assert!(f(&summary["convert_us_mean"]) > 0.0, "{summary}");
        assert!(!bus.shm_path().exists(), "the bus outlived its producer");
    }

    /// Paced to the file's own rate unless --fps says otherwise; --fps 0 =
    /// unpaced (the header's nominal rate says which).
    #[test]
    fn video_is_paced_to_its_own_fps_unless_told() {
        let mut bus = Bus::new("pace");
        let video = write_video(&bus.root, "pace.avi", 10, 20.0);
        let source = format!("video:{}", video.display());
        for (extra, nominal) in [
            (vec![], 20.0),
            (vec!["--fps", "7"], 7.0),
            (vec!["--fps", "0"], 0.0),
        ] {
            let mut args = vec!["--source", source.as_str(), "--loop", "--duration", "20"];
            args.extend(extra);
            let p = bus.producer(&args);
            let v = bus.inspect();
            assert_eq!(f(&v["geometry"]["nominal_fps"]), nominal, "{args:?}: {v}");
            p.signal(rustix::process::Signal::TERM);
            bus.wait(&p, T);
        }
    }

    /// --loop starts the file over: frame seq holds video frame
    /// (seq - 1) mod the file's length, and the producer goes on past the
    /// end, as fast as it decodes with --fps 0.
    #[test]
    fn loop_starts_the_file_over() {
        let mut bus = Bus::new("loop");
        let video = write_video(&bus.root, "loop.avi", 10, 25.0);
        let name = bus.name.clone();
        let mut producer = bus.producer(&[
            "--source",
            &format!("video:{}", video.display()),
            "--loop",
            "--fps",
            "0",
            "--frames",
            "300",
            "--json",
        ]);
        let got = consume_all(&name, |seq| ((seq - 1) % 10) as u32);
        assert!(!got.is_empty());
        let summary = producer.last_json(T);
        assert_eq!(u(&summary["frames"]), 300, "{summary}");
    }

    /// `snapshot --bgr` of a video bus with --debug-bgr decodes to the
    /// video's colours; the gray snapshot to its gray levels.
    #[test]
    fn snapshot_bgr_of_a_video_has_its_colours() {
        let mut bus = Bus::new("snapbgr");
        let video = write_video(&bus.root, "colour.avi", 20, 25.0);
        let source = format!("video:{}", video.display());
        bus.producer(&[
            "--source",
            &source,
            "--loop",
            "--debug-bgr",
            "--duration",
            "20",
        ]);
        let png = bus.root.join("colour.png");
        let (status, out, err) = bus.run(&[
            "snapshot",
            "--bus",
            &bus.name,
            "-o",
            png.to_str().unwrap(),
            "--bgr",
            "--json",
        ]);
        assert!(status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
        assert_eq!(v["bgr"], true);
        let seq = u(&v["seq"]);
        let file = std::fs::File::open(&png).expect("png");
        let mut reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .expect("png");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("png frame");
        assert_eq!(
            (info.width, info.height, info.color_type),
            (W, H, png::ColorType::Rgb)
        );
        let rgb = |x: u32, y: u32| {
            let i = 3 * (y * W + x) as usize;
            [buf[i], buf[i + 1], buf[i + 2]]
        };
        let cw = W / 3;
        for (k, [b, g, r]) in COLOURS.iter().enumerate() {
            let got = rgb(k as u32 * cw + cw / 2, H * 3 / 4);
            for (c, (got, want)) in got.iter().zip([r, g, b]).enumerate() {
                assert!(
                    (i32::from(*got) - i32::from(*want)).abs() <= TOL,
                    "block {k} channel {c} (R, G, B order): {got} vs {want}; pixel {:?}",
                    rgb(k as u32 * cw + cw / 2, H * 3 / 4)
                );
            }
        }
        // The bands encode the video frame the BGR slot holds: seq - 1
        // modulo the file's 20 frames.
        let bh = band_height(H);
        let mut index = 0u32;
        for b in 0..BANDS {
            if rgb(W / 2, b * bh + bh / 2)[1] > 128 {
                index |= 1 << b;
            }
        }
        assert_eq!(u64::from(index), (seq - 1) % 20, "BGR frame {seq}");
    }

    /// Bad inputs: a clear message naming the problem, exit != 0, no
    /// panic, nothing left in /dev/shm.
    #[test]
    fn bad_sources_are_clear_errors() {
        let bus = Bus::new("badsrc");
        let dir = &bus.root;
        let garbage = dir.join("garbage.avi");
        std::fs::write(
            &garbage,
            (0..4096u32)
                .map(|i| (i * 7919 % 251) as u8)
                .collect::<Vec<_>>(),
        )
        .expect("write");
        let empty = dir.join("empty.avi");
        std::fs::write(&empty, b"").expect("write");
        let wav = dir.join("sound.wav");
        std::fs::write(&wav, wav_bytes()).expect("write");
        let missing = dir.join("missing.avi");
        let mut cases = vec![
            (format!("video:{}", missing.display()), "no such file"),
            (format!("video:{}", garbage.display()), "not a video file"),
            (format!("video:{}", empty.display()), "the file is empty"),
            (format!("video:{}", dir.display()), "is a directory"),
            (format!("video:{}", wav.display()), "has no video stream"),
            ("camera:x".to_owned(), "camera index must be a number"),
        ];
        if !Path::new("/dev/video63").exists() {
            cases.push(("camera:63".to_owned(), "no camera 63"));
        }
        for (source, expect) in cases {
            let (status, out, err) = bus.run(&["produce", "--bus", &bus.name, "--source", &source]);
            assert!(!status.success(), "{source}: succeeded: {out}");
            assert!(
                err.contains(expect),
                "{source}: expected {expect:?} in: {err}"
            );
            assert!(!err.contains("panicked"), "{source}: {err}");
            assert!(!out.contains("ready"), "{source}: a bus was created: {out}");
            assert!(
                !bus.shm_path().exists(),
                "{source}: left {}",
                bus.shm_path().display()
            );
        }
        let (status, _, err) = bus.run(&[
            "produce",
            "--bus",
            &bus.name,
            "--source",
            &format!("video:{}", wav.display()),
            "--size",
            "64x64",
        ]);
        assert!(
            !status.success() && err.contains("--size does not apply"),
            "{err}"
        );
    }

    /// The JPEG of every frame of an MJPEG .avi (its `00dc` chunks).
    fn avi_jpegs(path: &Path) -> Vec<Vec<u8>> {
        let b = std::fs::read(path).expect("read avi");
        let mut i = b.windows(4).position(|w| w == b"movi").expect("movi list");
        let mut out = Vec::new();
        while let Some(j) = b[i..].windows(4).position(|w| w == b"00dc").map(|j| i + j) {
            let n = u32::from_le_bytes(b[j + 4..j + 8].try_into().expect("4 bytes")) as usize;
            let data = &b[j + 8..j + 8 + n];
            if data.starts_with(&[0xFF, 0xD8]) {
                out.push(data.to_vec());
            }
            i = j + 8 + n;
        }
        out
    }

    /// A minimal MJPEG .avi (RIFF: hdrl, movi, idx1) of the given JPEGs;
    /// the header says `size`, each JPEG has its own.
    fn write_avi(path: &Path, jpegs: &[Vec<u8>], size: (u32, u32), fps: u32) {
        fn chunk(id: &[u8], data: &[u8]) -> Vec<u8> {
            let mut v = id.to_vec();
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(data);
            if data.len() % 2 == 1 {
                v.push(0);
            }
            v
        }
        fn list(kind: &[u8], data: &[u8]) -> Vec<u8> {
            let mut body = kind.to_vec();
            body.extend_from_slice(data);
            chunk(b"LIST", &body)
        }
        let le = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (w, h) = size;
        let n = jpegs.len() as u32;
        let max = jpegs.iter().map(Vec::len).max().unwrap_or(0) as u32;
        let avih = le(&[1_000_000 / fps, 0, 0, 0x10, n, 0, 1, max, w, h, 0, 0, 0, 0]);
        let mut strh = b"vidsMJPG".to_vec();
        strh.extend(le(&[0, 0, 0, 1, fps, 0, n, max, u32::MAX, 0]));
        strh.extend(
            [0u16, 0, w as u16, h as u16]
                .iter()
                .flat_map(|x| x.to_le_bytes()),
        );
        let mut strf = le(&[40, w, h]);
        strf.extend(1u16.to_le_bytes());
        strf.extend(24u16.to_le_bytes());
        strf.extend(b"MJPG");
        strf.extend(le(&[w * h * 3, 0, 0, 0, 0]));
        let strl = [chunk(b"strh", &strh), chunk(b"strf", &strf)].concat();
        let hdrl = list(
            b"hdrl",
            &[chunk(b"avih", &avih), list(b"strl", &strl)].concat(),
        );
        let (mut movi, mut idx) = (Vec::new(), Vec::new());
        for j in jpegs {
            idx.extend(b"00dc");
            idx.extend(le(&[0x10, 4 + movi.len() as u32, j.len() as u32]));
            movi.extend(chunk(b"00dc", j));
        }
        let body = [
            b"AVI ".to_vec(),
            hdrl,
            list(b"movi", &movi),
            chunk(b"idx1", &idx),
        ]
        .concat();
        std::fs::write(path, chunk(b"RIFF", &body)).expect("write avi");
    }

    /// A video whose frames change size mid-stream — what a camera that
    /// switches resolution does — read with OpenCV's own MJPEG decoder
    /// (FFmpeg's would scale every frame to the first size): the producer
    /// re-creates the bus at the new size with a new instance id, the
    /// consumer re-attaches by itself, and no frame is ever read with the
    /// wrong geometry (each is checked against the content written at its
    /// own size).
    #[test]
    fn a_source_changing_size_recreates_the_bus_end_to_end() {
        let bus = Bus::new("resize");
        let (big, small) = ((320, 240), (160, 128));
        let a = write_video_sized(&bus.root, "a.avi", big, 0..30, 30.0);
        let b = write_video_sized(&bus.root, "b.avi", small, 30..60, 30.0);
        let jpegs = [avi_jpegs(&a), avi_jpegs(&b)].concat();
        assert_eq!(jpegs.len(), 60);
        let mixed = bus.root.join("mixed.avi");
        write_avi(&mixed, &jpegs, big, 30);
        let mut child = bus
            .command(&[
                "produce",
                "--bus",
                &bus.name,
                "--source",
                &format!("video:{}", mixed.display()),
                "--fps",
                "30",
                "--json",
            ])
            .env("OPENCV_VIDEOIO_PRIORITY_FFMPEG", "0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn producer");
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let child = Kill(child);
        let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
        let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
        let name = BusName::new(&bus.name).expect("bus name");
        let mut consumer = Consumer::attach_wait(ConsumerConfig::new(name), T).expect("attach");
        let deadline = Instant::now() + T;
        let mut seen: Vec<(u64, (u32, u32), u32)> = Vec::new(); // (instance, size, index)
        while Instant::now() < deadline {
            let Some(frame) = consumer
                .next_frame(Some(Duration::from_millis(100)))
                .expect("next_frame")
            else {
                if seen.iter().any(|s| s.1 == small) && consumer.info().is_none() {
                    break; // the second bus ended too
                }
                continue;
            };
            let index = decode_index(&frame);
            let size = (frame.width(), frame.height());
            assert_eq!(
                size,
                if index < 30 { big } else { small },
                "video frame {index}"
            );
            seen.push((frame.instance_id(), size, index));
        }
        drop(consumer);
        let mut child = child;
        let status = super::common::wait_timeout(&mut child.0, T).expect("producer exits");
        let (out, err) = (
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        );
        assert!(status.success(), "producer failed: {err}");
        assert!(err.contains("re-created at 160x128"), "{err}");
        let summary: serde_json::Value =
            serde_json::from_str(out.lines().last().unwrap_or("")).expect("summary");
        assert_eq!(u(&summary["recreated"]), 1, "{summary}");
        assert_eq!(u(&summary["frames"]), 60, "{summary}");
        let first = seen.first().expect("frames").0;
        let second: Vec<_> = seen.iter().filter(|s| s.0 != first).collect();
        assert!(
            seen.iter().filter(|s| s.0 == first).all(|s| s.1 == big),
            "{seen:?}"
        );
        assert!(
            second.len() >= 10 && second.iter().all(|s| s.1 == small),
            "{seen:?}"
        );
        assert!(
            seen.windows(2).all(|p| p[0].2 < p[1].2),
            "video frames out of order: {seen:?}"
        );
        assert_eq!(instance_changes(&seen), 1);
        assert!(!bus.shm_path().exists());
    }

    /// How many times the instance id changed along the frames seen.
    fn instance_changes(seen: &[(u64, (u32, u32), u32)]) -> usize {
        seen.windows(2).filter(|p| p[0].0 != p[1].0).count()
    }

    // ------------------------------------------ bgr8, rgb8 and gray16 buses

    /// The format tests' colour video: FW x FH frames of BLOCK x BLOCK flat
    /// blocks (5 x 3), block k of frame i in colour
    /// `PALETTE[(k + i) % PALETTE.len()]`, so every frame differs and each
    /// frame's seq can be checked too.
    const FW: u32 = 160;
    const FH: u32 = 96;
    const BLOCK: u32 = 32;
    const COLOUR_FRAMES: u32 = 12;
    /// B, G, R: pure red, green and blue (a pure red block reads 0,0,255 in
    /// a bgr8 slot and 255,0,0 in an rgb8 one), then colours whose three
    /// channels differ from each other by 100 or more, so that any swap of
    /// two channels moves a value far beyond the lossy fallback's
    /// tolerance.
    const PALETTE: [[u8; 3]; 6] = [
        [0, 0, 255],
        [0, 255, 0],
        [255, 0, 0],
        [30, 140, 250],
        [220, 110, 0],
        [0, 128, 255],
    ];

    /// The B, G, R colour of pixel (x, y) of colour frame `i`.
    fn block_colour(i: u32, x: u32, y: u32) -> [u8; 3] {
        let k = (y / BLOCK) * (FW / BLOCK) + x / BLOCK;
        PALETTE[((k + i) % PALETTE.len() as u32) as usize]
    }

    /// How the colour video was written, and so how exactly it reads back.
    struct Codec {
        what: &'static str,
        /// Largest difference allowed per channel.
        tol: i32,
        /// Every pixel is checked (lossless), or the centre of each block
        /// but the last (lossy).
        every_pixel: bool,
    }

    /// Writes the colour video into `dir`: FFV1 in Matroska through
    /// OpenCV's FFmpeg backend, lossless (FFmpeg decodes it back to the very
    /// BGR bytes written: tolerance 0, every pixel checked). If this OpenCV
    /// has no FFmpeg encoder, MJPEG with OpenCV's own encoder: the centres
    /// of the flat 32 x 32 blocks (aligned to JPEG's 16 x 16 macroblocks)
    /// come back within 2 levels here, read by FFmpeg or OpenCV's MJPEG
    /// reader, so they are checked with a tolerance of 16 (room for other
    /// JPEG decoders' rounding, far below the 100 between any two channels
    /// of a colour). The bottom-right block is not checked then: OpenCV
    /// 4.6's encoder leaves the last macroblocks of some frames truncated
    /// ("Corrupt JPEG data: premature end of data segment"), off by up to
    /// 91 levels there.
    fn write_colour_video(dir: &Path) -> (PathBuf, Codec) {
        let size = Size::new(FW as i32, FH as i32);
        let ffv1 = dir.join("colours.mkv");
        let fourcc = VideoWriter::fourcc('F', 'F', 'V', '1').expect("fourcc");
        let lossless = VideoWriter::new_with_backend(
            ffv1.to_str().expect("utf-8 path"),
            CAP_FFMPEG,
            fourcc,
            25.0,
            size,
            true,
        )
        .ok()
        .filter(|w| w.is_opened().unwrap_or(false));
        let (path, mut writer, codec) = match lossless {
            Some(w) => (
                ffv1,
                w,
                Codec {
                    what: "FFV1 (lossless)",
                    tol: 0,
                    every_pixel: true,
                },
            ),
            None => {
                let path = dir.join("colours.avi");
                let w = VideoWriter::new_with_backend(
                    path.to_str().expect("utf-8 path"),
                    CAP_OPENCV_MJPEG,
                    VideoWriter::fourcc('M', 'J', 'P', 'G').expect("fourcc"),
                    25.0,
                    size,
                    true,
                )
                .expect("VideoWriter");
                (
                    path,
                    w,
                    Codec {
                        what: "MJPEG (no FFmpeg encoder here)",
                        tol: 16,
                        every_pixel: false,
                    },
                )
            }
        };
        assert!(writer.is_opened().expect("is_opened"), "{}", path.display());
        for i in 0..COLOUR_FRAMES {
            let mut m =
                Mat::new_rows_cols_with_default(FH as i32, FW as i32, CV_8UC3, Scalar::all(0.0))
                    .expect("Mat");
            for by in (0..FH).step_by(BLOCK as usize) {
                for bx in (0..FW).step_by(BLOCK as usize) {
                    let [b, g, r] = block_colour(i, bx, by);
                    let rect = Rect::new(bx as i32, by as i32, BLOCK as i32, BLOCK as i32);
                    let colour = Scalar::new(f64::from(b), f64::from(g), f64::from(r), 0.0);
                    Mat::roi_mut(&mut m, rect)
                        .expect("roi")
                        .set_to_def(&colour)
                        .expect("set_to");
                }
            }
            writer.write(&m).expect("write frame");
        }
        writer.release().expect("release");
        (path, codec)
    }

    /// Reads frames in a consumer in this process, handing each to `check`,
    /// until `count` have been checked; returns their seqs. Panics if that
    /// takes longer than T.
    fn check_frames(bus: &str, count: usize, mut check: impl FnMut(&Frame<'_>)) -> Vec<u64> {
        let name = BusName::new(bus).expect("bus name");
        let mut consumer = Consumer::attach_wait(ConsumerConfig::new(name), T).expect("attach");
        let deadline = Instant::now() + T;
        let mut seqs = Vec::new();
        while seqs.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} frames in {T:?}: {seqs:?}",
                seqs.len()
            );
            if let Some(frame) = consumer
                .next_frame(Some(Duration::from_millis(100)))
                .expect("next_frame")
            {
                check(&frame);
                seqs.push(frame.seq());
            }
        }
        seqs
    }

    /// A bgr8 and an rgb8 bus from a colour video hold its pixels in their
    /// own channel order: B, G, R and R, G, B. Each frame is checked against
    /// the video frame its seq says it is (`--loop`: `(seq - 1) mod 12`).
    #[test]
    fn video_fills_bgr8_and_rgb8_slots_in_their_channel_order() {
        let mut bus = Bus::new("colourfmt");
        let (video, codec) = write_colour_video(&bus.root);
        let source = format!("video:{}", video.display());
        for (format, pixel_format) in [("bgr8", PixelFormat::Bgr8), ("rgb8", PixelFormat::Rgb8)] {
            let p = bus.producer(&[
                "--source",
                &source,
                "--format",
                format,
                "--loop",
                "--fps",
                "100",
                "--duration",
                "30",
            ]);
            let v = bus.inspect();
            assert_eq!(v["geometry"]["pixel_format"], format, "{v}");
            assert_eq!(
                (u(&v["geometry"]["width"]), u(&v["geometry"]["height"])),
                (FW.into(), FH.into())
            );
            // What the slot holds for a pixel written as B, G, R.
            let in_slot = |[b, g, r]: [u8; 3]| match pixel_format {
                PixelFormat::Rgb8 => [r, g, b],
                _ => [b, g, r],
            };
            let red = in_slot(PALETTE[0]);
            assert_eq!(
                red,
                if format == "bgr8" {
                    [0, 0, 255]
                } else {
                    [255, 0, 0]
                },
                "pure red in {format}"
            );
            let mut reds = 0;
            let seqs = check_frames(&bus.name, 2 * COLOUR_FRAMES as usize, |frame| {
                assert_eq!(frame.format(), pixel_format);
                assert_eq!((frame.width(), frame.height()), (FW, FH));
                let i = ((frame.seq() - 1) % u64::from(COLOUR_FRAMES)) as u32;
                let mut check = |x: u32, y: u32| {
                    let got = frame.row_triples(y).expect("a colour frame")[x as usize];
                    let want = in_slot(block_colour(i, x, y));
                    let off = got
                        .iter()
                        .zip(want)
                        .map(|(g, w)| (i32::from(*g) - i32::from(w)).abs())
                        .max()
                        .unwrap_or(0);
                    assert!(
                        off <= codec.tol,
                        "{format} frame {} (video frame {i}), pixel ({x}, {y}): {got:?}, want {want:?} ({})",
                        frame.seq(),
                        codec.what
                    );
                    if want == red {
                        reds += 1;
                    }
                };
                if codec.every_pixel {
                    for y in 0..FH {
                        for x in 0..FW {
                            check(x, y);
                        }
                    }
                } else {
                    for y in (BLOCK / 2..FH).step_by(BLOCK as usize) {
                        for x in (BLOCK / 2..FW).step_by(BLOCK as usize) {
                            if (x, y) != (FW - BLOCK / 2, FH - BLOCK / 2) {
                                check(x, y);
                            }
                        }
                    }
                }
            });
            assert!(reds > 0, "no pure red pixel checked");
            assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");
            p.signal(rustix::process::Signal::TERM);
            assert!(bus.wait(&p, T).success());
            assert!(!bus.shm_path().exists());
        }
    }

    /// An 8-bit video cannot fill a gray16 bus, with or without --bits: the
    /// OpenCV source does not widen 8-bit values (they would claim a
    /// precision the capture does not have). The producer says so and what
    /// to use instead, exits 1, and removes the bus.
    #[test]
    fn an_8_bit_video_into_a_gray16_bus_is_refused() {
        let bus = Bus::new("gray16from8");
        let video = write_video(&bus.root, "eight.avi", 5, 25.0);
        let source = format!("video:{}", video.display());
        for bits in [&[][..], &["--bits", "12"][..]] {
            let mut args = vec![
                "produce", "--bus", &bus.name, "--source", &source, "--format", "gray16",
            ];
            args.extend_from_slice(bits);
            let (status, _, err) = bus.run(&args);
            assert_eq!(status.code(), Some(1), "{args:?}: {err}");
            assert!(
                err.contains("the source delivers 8-bit frames")
                    && err.contains("needs a capture that delivers 16-bit gray")
                    && err.contains("use --format gray8"),
                "{args:?}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
            assert!(!bus.shm_path().exists(), "{args:?}: the bus was left");
        }
    }

    /// The gray16 test's frames: 64 x 32, eight 16 x 16 blocks, block k of
    /// frame i holding `values[(k + i) % 8]`.
    const G16_W: u32 = 64;
    const G16_H: u32 = 32;
    const G16_BLOCK: u32 = 16;
    const G16_FRAMES: u32 = 5;

    fn g16_value(values: &[u16; 8], i: u32, x: u32, y: u32) -> u16 {
        let k = (y / G16_BLOCK) * (G16_W / G16_BLOCK) + x / G16_BLOCK;
        values[((k + i) % 8) as usize]
    }

    /// Writes frames `frame_000.png`.. of `values` as 16-bit gray PNGs
    /// into `dir`; returns the first one's path.
    fn write_16_bit_pngs(dir: &Path, values: &[u16; 8]) -> PathBuf {
        std::fs::create_dir_all(dir).expect("mkdir");
        for i in 0..G16_FRAMES {
            let file = std::fs::File::create(dir.join(format!("frame_{i:03}.png"))).expect("png");
            let mut enc = png::Encoder::new(std::io::BufWriter::new(file), G16_W, G16_H);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Sixteen);
            let mut w = enc.write_header().expect("png header");
            let data: Vec<u8> = (0..G16_H)
                .flat_map(|y| (0..G16_W).map(move |x| (x, y)))
                .flat_map(|(x, y)| g16_value(values, i, x, y).to_be_bytes())
                .collect();
            w.write_image_data(&data).expect("png data");
        }
        dir.join("frame_000.png")
    }

    /// A capture that delivers 16-bit gray fills a gray16 bus with its
    /// values unchanged, whatever --bits says (the header records it; a
    /// 12-bit capture's values stay 0..=4095), and the debug BGR slot shows
    /// each value as `v >> (bits - 8)`, as consumers' `to_rgb` does. The
    /// capture here is OpenCV's image-sequence reader on 16-bit PNGs (it
    /// keeps their depth); FFmpeg and GStreamer, which would read them at 8
    /// bits, are turned off for the producer with
    /// OPENCV_VIDEOIO_PRIORITY_*=0.
    #[test]
    fn a_16_bit_capture_fills_gray16_slots_with_its_values_unchanged() {
        let mut bus = Bus::new("gray16");
        let full: [u16; 8] = [0, 1, 255, 256, 4095, 4096, 0xA5C3, 65535];
        let twelve: [u16; 8] = [0, 1, 15, 16, 255, 256, 0x0A5C, 4095];
        for (bits, values) in [(16u8, full), (12, twelve)] {
            let first = write_16_bit_pngs(&bus.root.join(format!("seq{bits}")), &values);
            let mut args = vec![
                "produce".to_owned(),
                "--bus".into(),
                bus.name.clone(),
                "--source".into(),
                format!("video:{}", first.display()),
                "--format".into(),
                "gray16".into(),
                "--loop".into(),
                "--fps".into(),
                "100".into(),
                "--duration".into(),
                "30".into(),
                "--debug-bgr".into(),
            ];
            if bits != 16 {
                args.extend(["--bits".into(), bits.to_string()]);
            }
            let mut cmd = bus.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
            cmd.env("OPENCV_VIDEOIO_PRIORITY_FFMPEG", "0")
                .env("OPENCV_VIDEOIO_PRIORITY_GSTREAMER", "0");
            let mut p = bus.spawn_command(cmd);
            p.expect_line(&format!("ready bus={}", bus.name), T);
            let v = bus.inspect();
            assert_eq!(v["geometry"]["pixel_format"], "gray16", "{v}");
            assert_eq!(
                u(&v["geometry"]["significant_bits"]),
                u64::from(bits),
                "{v}"
            );
            check_frames(&bus.name, 2 * G16_FRAMES as usize, |frame| {
                assert_eq!(frame.format(), PixelFormat::Gray16);
                assert_eq!(frame.significant_bits(), bits);
                assert_eq!((frame.width(), frame.height()), (G16_W, G16_H));
                let i = ((frame.seq() - 1) % u64::from(G16_FRAMES)) as u32;
                for (y, row) in frame.rows_u16().expect("gray16 rows").enumerate() {
                    for (x, &got) in row.iter().enumerate() {
                        let want = g16_value(&values, i, x as u32, y as u32);
                        assert_eq!(
                            got,
                            want,
                            "{bits}-bit frame {} (image {i}) pixel ({x}, {y})",
                            frame.seq()
                        );
                    }
                }
            });
            let png_path = bus.root.join(format!("bgr{bits}.png"));
            let (status, out, err) = bus.run(&[
                "snapshot",
                "--bus",
                &bus.name,
                "-o",
                png_path.to_str().expect("utf-8"),
                "--bgr",
                "--json",
            ]);
            assert!(status.success(), "{err}");
            let snap: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
            let i = ((u(&snap["seq"]) - 1) % u64::from(G16_FRAMES)) as u32;
            let file = std::fs::File::open(&png_path).expect("png");
            let mut reader = png::Decoder::new(std::io::BufReader::new(file))
                .read_info()
                .expect("png");
            let mut buf = vec![0; reader.output_buffer_size().expect("size")];
            let info = reader.next_frame(&mut buf).expect("png frame");
            assert_eq!((info.width, info.height), (G16_W, G16_H));
            for y in 0..G16_H {
                for x in 0..G16_W {
                    let v = (g16_value(&values, i, x, y) >> (bits - 8)).min(255) as u8;
                    let at = 3 * (y * G16_W + x) as usize;
                    assert_eq!(
                        buf[at..at + 3],
                        [v, v, v],
                        "{bits}-bit BGR frame {} pixel ({x}, {y})",
                        u(&snap["seq"])
                    );
                }
            }
            p.signal(rustix::process::Signal::TERM);
            assert!(bus.wait(&p, T).success());
        }
    }

    /// One second of 8 kHz 16-bit mono silence: a media file with no video.
    fn wav_bytes() -> Vec<u8> {
        let data = vec![0u8; 16_000];
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes()); // PCM
        v.extend_from_slice(&1u16.to_le_bytes()); // mono
        v.extend_from_slice(&8000u32.to_le_bytes());
        v.extend_from_slice(&16000u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&data);
        v
    }
}
