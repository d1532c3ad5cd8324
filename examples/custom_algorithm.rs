//! A consumer with its own algorithm: counts strong horizontal edges in
//! each frame, reading the pixels straight out of the shared slot.
//!
//! ```sh
//! cargo run --release -- produce --bus cam0 &
//! cargo run --release --example custom_algorithm -- cam0 10
//! ```

use std::time::Duration;

use framebus_consumer::{Algorithm, BusInfo, Consumer, ConsumerConfig, FrameView};
use shm_layout::BusName;

/// Counts pixels whose difference to their left neighbour exceeds a threshold.
struct EdgeCount {
    threshold: u8,
    last: u64,
}

impl Algorithm for EdgeCount {
    fn name(&self) -> &str {
        "edges"
    }

    fn setup(&mut self, bus: &BusInfo) -> Result<(), String> {
        println!(
            "attached to a {}x{} bus as entry {}",
            bus.layout.width, bus.layout.height, bus.entry
        );
        Ok(())
    }

    fn process(&mut self, frame: &FrameView<'_>) -> Result<(), String> {
        let mut edges = 0u64;
        for y in 0..frame.height {
            let row = frame.row(y); // a slice of the shared slot: no copy
            edges += row
                .windows(2)
                .filter(|w| w[0].abs_diff(w[1]) > self.threshold)
                .count() as u64;
        }
        self.last = edges;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bus = BusName::new(&args.next().unwrap_or_else(|| "cam0".into()))?;
    let frames: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let config = ConsumerConfig {
        name: "edges".into(),
        max_fps: Some(10.0),
        ..ConsumerConfig::new(bus)
    };
    let mut consumer = Consumer::attach_wait(config, Duration::from_secs(10))?;
    let mut algo = EdgeCount {
        threshold: 32,
        last: 0,
    };
    let mut instance = 0;
    while consumer.frames() < frames {
        let Some(frame) = consumer.next_frame(Some(Duration::from_secs(5)))? else {
            eprintln!("no frame for 5 s; is the producer running?");
            continue;
        };
        if frame.instance_id() != instance {
            instance = frame.instance_id();
            algo.setup(&frame.bus())?;
        }
        algo.process(&frame.view())?;
        println!(
            "frame {:>6}: {:>8} edges, {:>6.0} us after publish",
            frame.seq(),
            algo.last,
            frame.latency_ns() as f64 / 1e3
        );
    }
    algo.teardown()?;
    Ok(())
}
