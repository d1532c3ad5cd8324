//! A producer fed by your own frame source: a synthetic mono12 camera
//! (12-bit values in a gray16 bus) implementing [`FrameSource`], published
//! by [`run_source`] with the library's pacing, housekeeping and clean
//! shutdown (Ctrl-C removes the bus).
//!
//! ```sh
//! cargo run --release --example custom_source -- cam0 600     # 600 frames at 60 fps
//! cargo run --release -- consume --bus cam0 --algo mean         # elsewhere
//! ```
//!
//! A real camera SDK goes where `Mono12Camera::fill` draws: wait for the
//! SDK's next buffer, then copy (or let the SDK write) its rows into
//! `slot.data()`, `slot.stride()` bytes apart, in `slot.format()`.

use framebus_producer::{
    run_source, stop_on_signals, Captured, FrameSource, ProducerConfig, RunOptions, SlotWriter,
    SourceError,
};
use shm_layout::{BusName, PixelFormat};

/// A synthetic 12-bit monochrome camera: a diagonal gradient that moves 8
/// levels a frame.
struct Mono12Camera {
    width: u32,
    height: u32,
    frame: u64,
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock framebus capture times use.
fn monotonic_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl FrameSource for Mono12Camera {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn native_fps(&self) -> Option<f64> {
        Some(60.0)
    }

    fn fill(&mut self, _seq: u64, slot: &mut SlotWriter<'_>) -> Result<Captured, SourceError> {
        if slot.format() != PixelFormat::Gray16 {
            return Err(SourceError::Failed(format!(
                "this camera delivers 16-bit gray, not {}",
                slot.format()
            )));
        }
        let capture_ns = monotonic_ns();
        let (w, h, stride) = (
            slot.width() as usize,
            slot.height() as usize,
            slot.stride() as usize,
        );
        let shift = self.frame * 8;
        for (y, row) in slot.data().chunks_mut(stride).take(h).enumerate() {
            // Each pixel is a little-endian u16 (doc/LAYOUT.md §5.5).
            for (x, px) in row[..2 * w].chunks_exact_mut(2).enumerate() {
                let v = ((x + y) as u64 + shift) % 4096;
                px.copy_from_slice(&(v as u16).to_le_bytes());
            }
        }
        self.frame += 1;
        Ok(Captured { capture_ns })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bus = BusName::new(&args.next().unwrap_or_else(|| "cam0".into()))?;
    let frames = match args.next() {
        Some(n) => Some(n.parse::<u64>().map_err(|e| format!("frames {n:?}: {e}"))?),
        None => None,
    };
    let mut camera = Mono12Camera {
        width: 640,
        height: 480,
        frame: 0,
    };
    let config = ProducerConfig {
        nominal_fps: 60.0,
        ..ProducerConfig::new(bus.clone()).with_format(PixelFormat::Gray16, 12)
    };
    let stop = stop_on_signals()?;
    let opts = RunOptions {
        fps: camera.native_fps(),
        frames,
        ..Default::default()
    };
    let stats = run_source(config, &mut camera, opts, &stop, |producer| {
        let l = producer.layout();
        println!(
            "ready bus={bus} {}x{} {} ({} bits)",
            l.width, l.height, l.format, l.significant_bits
        );
    })?;
    println!("published {} frames", stats.frames);
    Ok(())
}
