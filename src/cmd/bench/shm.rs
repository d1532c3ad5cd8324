//! One run over framebus: a producer and `--consumers` consumer processes
//! on a shared-memory bus.

use std::time::{Duration, Instant};

use shm_layout::{Layout, LayoutRequest};

use super::ceiling::memcpy_fps;
use super::figures::{consumer_result, finish, ProcResult, RunResult};
use super::processes::{
    bench_bus, snapshot, start_consumer, start_producer, wait_with_progress, ProducerJson,
};
use super::procfs::{cpu_and_rss, sample};
#[cfg(unix)]
use super::procfs::{cpu_split, pin_to};
use super::RunConfig;
use crate::cmd::child::last_json;
use crate::cmd::consume::ConsumeSummary;

pub(super) fn run_shm(cfg: &RunConfig) -> anyhow::Result<RunResult> {
    let layout = Layout::compute(LayoutRequest {
        width: cfg.width,
        height: cfg.height,
        max_consumers: cfg.consumers,
        pins_per_consumer: 1,
        format: cfg.format,
        significant_bits: 0,
    })?;
    let memcpy = memcpy_fps(&layout)?;
    let bus = bench_bus()?;
    let (mut producer, prod_out) = start_producer(&bus, cfg, cfg.consumers)?;
    let mut consumers = Vec::new();
    for i in 0..cfg.consumers as usize {
        // No --duration: the bench stops every process (SIGTERM, or on
        // Windows its stdin closed) right after its last sample, so none
        // has exited when it is sampled.
        let warmup = cfg.warmup.to_string();
        let mut args = vec!["--algo", cfg.algo.as_str(), "--warmup", warmup.as_str()];
        let rate = cfg.rate_of(i).to_string();
        args.extend(["--max-fps", rate.as_str()]);
        consumers.push(start_consumer(&bus, &args)?);
    }
    // `run` refuses --producer-cpu where it is not supported.
    #[cfg(unix)]
    if let Some(cpu) = cfg.producer_cpu {
        let (only, others) = cpu_split(cpu)?;
        pin_to(producer.pid(), &only)?;
        for (c, _) in &consumers {
            pin_to(c.pid(), &others)?;
        }
    }
    let label = format!("bench shm {}x{} x{}", cfg.width, cfg.height, cfg.consumers);
    wait_with_progress(&format!("{label} (warm-up)"), cfg.warmup);
    let mut pids = vec![producer.pid()];
    pids.extend(consumers.iter().map(|(c, _)| c.pid()));
    let (t0, snap0, cpu0) = (Instant::now(), snapshot(&bus)?, sample(&pids));
    wait_with_progress(&label, cfg.duration);
    let (snap1, cpu1) = (snapshot(&bus)?, sample(&pids));
    let secs = t0.elapsed().as_secs_f64();
    let mut processes = Vec::new();
    let frames = snap1.frames_published - snap0.frames_published;
    let mut results = Vec::new();
    for (child, _) in &mut consumers {
        child.stop()?;
    }
    for (i, (mut child, out)) in consumers.into_iter().enumerate() {
        let s: ConsumeSummary = last_json(&out, Duration::from_secs(30))?;
        child.wait(Duration::from_secs(10))?;
        results.push((i, s));
    }
    producer.stop()?;
    let prod: ProducerJson = last_json(&prod_out, Duration::from_secs(30))?;
    producer.wait(Duration::from_secs(10))?;
    let (cpu, rss) = cpu_and_rss(&cpu0, &cpu1, 0, secs);
    processes.push(ProcResult {
        role: "producer",
        pid: pids[0],
        max_fps: None,
        fps: frames as f64 / secs,
        frames,
        cpu_pct: cpu,
        peak_rss_mib: rss,
        publish_us: Some(prod.publish_us_mean),
        latency_us: None,
        coalesced: None,
        bad_frames: None,
    });
    for (i, s) in results {
        processes.push(consumer_result(
            pids[i + 1],
            cfg.rate_of(i),
            &s,
            cpu_and_rss(&cpu0, &cpu1, i + 1, secs),
        ));
    }
    Ok(finish(cfg, memcpy, secs, processes))
}
