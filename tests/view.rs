//! `framebus view` over real HTTP: the page, the JSON figures and the MJPEG
//! stream of a live bus, one JPEG of which is decoded and checked; with
//! OpenCV, the debug BGR frame of a video bus as a colour JPEG.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{f, u, Bus};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// Sends `GET path` and returns a reader positioned after the response
/// headers, with the status line and headers.
fn get(addr: &str, path: &str) -> (BufReader<TcpStream>, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(T)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("header line");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    (r, head)
}

fn get_body(addr: &str, path: &str) -> (String, Vec<u8>) {
    let (mut r, head) = get(addr, path);
    let mut body = Vec::new();
    r.read_to_end(&mut body).expect("body");
    (head, body)
}

/// Reads one part of the MJPEG stream: (seq, JPEG bytes).
fn next_part(r: &mut BufReader<TcpStream>) -> (u64, Vec<u8>) {
    let (mut len, mut seq) = (None, 0);
    let mut started = false;
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).expect("part header") > 0,
            "stream ended"
        );
        let l = line.trim_end();
        if l.starts_with("--framebus-frame") {
            started = true;
        } else if let Some(v) = l.strip_prefix("Content-Length: ") {
            len = v.parse::<usize>().ok();
        } else if let Some(v) = l.strip_prefix("X-Framebus-Seq: ") {
            seq = v.parse().expect("seq");
        } else if l.is_empty() && started && len.is_some() {
            break;
        }
    }
    let mut jpeg = vec![0; len.expect("length")];
    r.read_exact(&mut jpeg).expect("JPEG bytes");
    (seq, jpeg)
}

/// Starts `framebus view` on the bus at 20 fps on a port the system picks,
/// and waits for its `listening http://ADDR/` line: the process and ADDR.
fn start_view(bus: &mut Bus) -> (common::Proc, String) {
    let name = bus.name.clone();
    let mut view = bus.spawn(&[
        "view",
        "--bus",
        &name,
        "--listen",
        "127.0.0.1:0",
        "--max-fps",
        "20",
    ]);
    let line = view.expect_line("listening http://", T);
    let addr = line
        .trim_start_matches("listening http://")
        .split('/')
        .next()
        .expect("address")
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{line}");
    (view, addr)
}

#[test]
fn view_serves_the_page_the_figures_and_a_decodable_stream() {
    let mut bus = Bus::new("view");
    bus.producer(&["--size", "320x240", "--fps", "60"]);
    let (mut view, addr) = start_view(&mut bus);

    let (head, page) = get_body(&addr, "/");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let page = String::from_utf8(page).expect("UTF-8 page");
    assert!(
        page.contains("/stream.mjpg") && page.contains("/stats.json"),
        "{page}"
    );
    assert!(page.contains(&bus.name), "the page names the bus");

    let (mut stream, head) = get(&addr, "/stream.mjpg");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("multipart/x-mixed-replace; boundary=framebus-frame"),
        "{head}"
    );
    let (seq1, jpeg) = next_part(&mut stream);
    let mut d = jpeg_decoder::Decoder::new(jpeg.as_slice());
    let pixels = d.decode().expect("a decodable JPEG");
    let info = d.info().expect("JPEG info");
    assert_eq!((info.width, info.height), (320, 240));
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::L8);
    assert_eq!(pixels.len(), 320 * 240);
    let (seq2, _) = next_part(&mut stream);
    assert!(seq2 > seq1, "the stream moves on: {seq1} then {seq2}");
    drop(stream);

    let (head, body) = get_body(&addr, "/stats.json");
    assert!(head.contains("application/json"), "{head}");
    let v: Value = serde_json::from_slice(&body).expect("stats JSON");
    assert_eq!(v["bus"]["bus"], bus.name.as_str(), "{v}");
    assert_eq!(v["bus"]["state"], "alive", "{v}");
    let me = v["bus"]["consumers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "view"))
        .unwrap_or_else(|| panic!("the view is an ordinary consumer of the bus: {v}"));
    assert_eq!(f(&me["max_fps"]), 20.0, "{me}");
    assert!(u(&v["view"]["frames"]) >= 2, "{v}");
    assert_eq!(
        v["view"]["bgr"], false,
        "the fake camera has no BGR frame: {v}"
    );

    let (head, body) = get_body(&addr, "/frame.jpg");
    assert!(head.contains("image/jpeg"), "{head}");
    assert!(jpeg_decoder::Decoder::new(body.as_slice()).decode().is_ok());
    let (head, _) = get_body(&addr, "/frame.jpg?bgr=1");
    assert!(head.starts_with("HTTP/1.1 503"), "no BGR frame: {head}");
    let (head, _) = get_body(&addr, "/nothing");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    view.signal(rustix::process::Signal::INT);
    let summary = view.expect_line("view of bus", T);
    assert!(summary.contains("frames encoded"), "{summary}");
}

/// Without OpenCV no source writes the debug BGR slot (the fake camera
/// refuses --debug-bgr), so the BGR picture cannot be served.
#[cfg(not(feature = "opencv"))]
#[test]
fn view_serves_the_debug_bgr_frame_of_a_video_bus() {
    common::skip(
        "view_serves_the_debug_bgr_frame_of_a_video_bus",
        "only a camera or video source writes the debug BGR slot: needs --features opencv",
    );
}

#[cfg(feature = "opencv")]
mod with_opencv {
    use std::path::{Path, PathBuf};

    use framebus_producer::opencv::core::{Mat, Rect, Scalar, Size, CV_8UC3};
    use framebus_producer::opencv::prelude::*;
    use framebus_producer::opencv::videoio::{VideoWriter, CAP_OPENCV_MJPEG};

    use super::common::{u, Bus};
    use super::{get, get_body, next_part, T};

    const W: u32 = 256;
    const H: u32 = 144;
    /// Four vertical bands, B, G, R: pure red, green, blue and white.
    const BANDS: [[u8; 3]; 4] = [[0, 0, 255], [0, 255, 0], [255, 0, 0], [255, 255, 255]];
    /// The bands are flat, 64 pixels wide (JPEG macroblocks are 16), and
    /// sampled at their centres after two JPEG encodings (the video's, the
    /// view's at quality 80): 40 levels, as tests/video.rs allows MJPEG,
    /// still tells 0 from 255.
    const TOL: i32 = 40;

    /// An MJPEG .avi (OpenCV's own encoder) of `frames` frames of the bands.
    fn write_video(dir: &Path, frames: u32) -> PathBuf {
        let path = dir.join("bands.avi");
        let mut writer = VideoWriter::new_with_backend(
            path.to_str().expect("utf-8 path"),
            CAP_OPENCV_MJPEG,
            VideoWriter::fourcc('M', 'J', 'P', 'G').expect("fourcc"),
            25.0,
            Size::new(W as i32, H as i32),
            true,
        )
        .expect("VideoWriter");
        assert!(writer.is_opened().expect("is_opened"), "{}", path.display());
        let mut m = Mat::new_rows_cols_with_default(H as i32, W as i32, CV_8UC3, Scalar::all(0.0))
            .expect("Mat");
        let bw = W / BANDS.len() as u32;
        for (k, [b, g, r]) in BANDS.iter().enumerate() {
            let rect = Rect::new(k as i32 * bw as i32, 0, bw as i32, H as i32);
            let colour = Scalar::new(f64::from(*b), f64::from(*g), f64::from(*r), 0.0);
            Mat::roi_mut(&mut m, rect)
                .expect("roi")
                .set_to_def(&colour)
                .expect("set_to");
        }
        for _ in 0..frames {
            writer.write(&m).expect("write frame");
        }
        writer.release().expect("release");
        path
    }

    /// Width and height from a baseline or progressive JPEG's SOF header.
    fn sof_size(jpeg: &[u8]) -> Option<(u32, u32)> {
        let mut i = 2;
        while i + 9 <= jpeg.len() {
            if jpeg[i] != 0xFF {
                return None;
            }
            let marker = jpeg[i + 1];
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            if (0xC0..=0xC2).contains(&marker) {
                let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
                let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
                return Some((w.into(), h.into()));
            }
            i += 2 + len;
        }
        None
    }

    /// A producer writing the debug BGR slot (a video source with
    /// --debug-bgr): `view` serves its BGR frame as a colour JPEG of the
    /// bus's size, in the stream and as /frame.jpg?bgr=1, with the video's
    /// colours in R, G, B order.
    #[test]
    fn view_serves_the_debug_bgr_frame_of_a_video_bus() {
        let mut bus = Bus::new("viewbgr");
        let video = write_video(&bus.root, 10);
        bus.producer(&[
            "--source",
            &format!("video:{}", video.display()),
            "--loop",
            "--debug-bgr",
            "--fps",
            "30",
            "--duration",
            "60",
        ]);
        let geometry = bus.inspect()["geometry"].clone();
        let size = (u(&geometry["width"]) as u32, u(&geometry["height"]) as u32);
        assert_eq!(size, (W, H), "{geometry}");
        let (mut view, addr) = super::start_view(&mut bus);

        // The BGR stream sends its first part once the view has encoded a
        // BGR frame: that is the wait.
        let (mut stream, head) = get(&addr, "/stream.mjpg?bgr=1");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let (seq, jpeg) = next_part(&mut stream);
        assert!(seq >= 1, "BGR part seq {seq}");
        drop(stream);
        for (what, jpeg) in [
            ("stream part", jpeg),
            ("/frame.jpg?bgr=1", {
                let (head, body) = get_body(&addr, "/frame.jpg?bgr=1");
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                assert!(head.contains("image/jpeg"), "{head}");
                body
            }),
        ] {
            assert!(
                jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]),
                "{what}: not one whole JPEG (SOI .. EOI)"
            );
            assert_eq!(sof_size(&jpeg), Some(size), "{what}: SOF size");
            let mut d = jpeg_decoder::Decoder::new(jpeg.as_slice());
            let pixels = d.decode().expect("a decodable JPEG");
            let info = d.info().expect("JPEG info");
            assert_eq!((u32::from(info.width), u32::from(info.height)), size);
            assert_eq!(
                info.pixel_format,
                jpeg_decoder::PixelFormat::RGB24,
                "{what}"
            );
            let bw = W / BANDS.len() as u32;
            for (k, [b, g, r]) in BANDS.iter().enumerate() {
                let at = 3 * ((H / 2) * W + k as u32 * bw + bw / 2) as usize;
                let got = &pixels[at..at + 3];
                for (c, want) in [r, g, b].iter().enumerate() {
                    assert!(
                        (i32::from(got[c]) - i32::from(**want)).abs() <= TOL,
                        "{what}: band {k} is {got:?} (R, G, B), want {:?}",
                        [r, g, b]
                    );
                }
            }
        }
        let (_, body) = get_body(&addr, "/stats.json");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("stats JSON");
        assert_eq!(v["view"]["bgr"], true, "{v}");

        view.signal(rustix::process::Signal::INT);
        view.expect_line("view of bus", T);
    }
}
