//! `framebus view` over real HTTP: the page, the JSON figures and the MJPEG
//! stream of a live bus, one JPEG of which is decoded and checked.

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

#[test]
fn view_serves_the_page_the_figures_and_a_decodable_stream() {
    let mut bus = Bus::new("view");
    bus.producer(&["--size", "320x240", "--fps", "60"]);
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
