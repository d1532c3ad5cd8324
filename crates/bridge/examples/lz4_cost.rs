//! What `--compress lz4` costs and saves per frame, on three kinds of gray
//! frames: the fake camera's test pattern (extremely compressible, so the
//! loopback figures with lz4 flatter it), a smooth scene with sensor noise
//! (closer to a camera), and random bytes (the worst case).
//!
//! ```sh
//! cargo run --release -p framebus-bridge --example lz4_cost [WIDTHxHEIGHT]
//! ```

use std::time::Instant;

use framebus_bridge::payload::{decode_into, encode_frame, Compression, FrameMeta};
use shm_layout::pattern::{splitmix64, Pattern};

fn main() {
    let (w, h) = std::env::args()
        .nth(1)
        .and_then(|s| {
            let (w, h) = s.split_once('x')?;
            Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?))
        })
        .unwrap_or((1920, 1080));
    let n = (w * h) as usize;
    let mut pattern = vec![0u8; n];
    Pattern::new(w).fill(1, &mut pattern, w as usize, h);
    // A smooth gradient with a few bits of noise, like a dim camera frame.
    let scene: Vec<u8> = (0..n)
        .map(|i| {
            let (x, y) = ((i % w as usize) as u64, (i / w as usize) as u64);
            let base = (x * 160 / u64::from(w) + y * 60 / u64::from(h)) as u8;
            base.wrapping_add((splitmix64(i as u64) % 8) as u8)
        })
        .collect();
    let random: Vec<u8> = (0..n).map(|i| splitmix64(i as u64) as u8).collect();
    println!("{w}x{h} gray, {n} bytes per frame");
    println!(
        "{:<16} {:>12} {:>8} {:>14} {:>16}",
        "frames", "lz4 bytes", "ratio", "compress us", "decompress us"
    );
    for (name, px) in [
        ("test pattern", &pattern),
        ("scene + noise", &scene),
        ("random", &random),
    ] {
        let meta = FrameMeta {
            source_instance: 1,
            seq: 1,
            capture_ns: 0,
            publish_ns: 0,
            width: w,
            height: h,
            format: shm_layout::PixelFormat::Gray8,
            significant_bits: 8,
        };
        let (mut scratch, mut out, mut dst) = (Vec::new(), Vec::new(), vec![0u8; n]);
        let rounds = 50;
        let t = Instant::now();
        for _ in 0..rounds {
            encode_frame(
                &meta,
                px,
                w as usize,
                Compression::Lz4,
                &mut scratch,
                &mut out,
            );
        }
        let enc = t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        let t = Instant::now();
        for _ in 0..rounds {
            if let Err(e) = decode_into(&out, &mut scratch, &mut dst, w as usize) {
                eprintln!("decode failed: {e}");
                std::process::exit(1);
            }
        }
        let dec = t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        assert_eq!(&dst, px, "round trip");
        println!(
            "{name:<16} {:>12} {:>8.1} {enc:>14.0} {dec:>16.0}",
            out.len(),
            n as f64 / out.len() as f64
        );
    }
}
