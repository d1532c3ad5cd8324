//! One run over the naive pipe transport (`framebus pipe-produce`, which
//! starts its own consumers), for the comparison with framebus.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use shm_layout::{Layout, LayoutRequest};

use super::ceiling::memcpy_fps;
use super::figures::{consumer_result, finish, ProcResult, RunResult};
use super::processes::{exe, wait_with_progress};
use super::procfs::{cpu_and_rss, sample};
use super::RunConfig;
use crate::cmd::child::{last_json, lines, Reaper};
use crate::cmd::pipe::PipeSummary;

pub(super) fn run_pipe(cfg: &RunConfig) -> anyhow::Result<RunResult> {
    let layout = Layout::compute(LayoutRequest {
        width: cfg.width,
        height: cfg.height,
        max_consumers: cfg.consumers,
        pins_per_consumer: 1,
        format: shm_layout::PixelFormat::Gray8,
        significant_bits: 0,
    })?;
    let memcpy = memcpy_fps(&layout)?;
    let size = format!("{}x{}", cfg.width, cfg.height);
    let mut cmd = Command::new(exe()?);
    cmd.args([
        "pipe-produce",
        "--size",
        &size,
        "--fps",
        &cfg.fps.to_string(),
        "--consumers",
        &cfg.consumers.to_string(),
    ])
    .args(["--algo", &cfg.algo, "--warmup", &cfg.warmup.to_string()])
    .stdout(Stdio::piped());
    if !cfg.max_fps.is_empty() {
        let list = cfg
            .max_fps
            .iter()
            .map(f64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        cmd.args(["--max-fps", &list]);
    }
    // Where there is no SIGTERM to stop it with (Windows), it stops by
    // itself at the end of the measured window.
    #[cfg(not(unix))]
    cmd.args(["--duration", &(cfg.warmup + cfg.duration).to_string()]);
    let mut producer = Reaper(Some(cmd.spawn().context("cannot start the pipe producer")?));
    let out = lines(
        producer
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("pipe producer stdout")?,
    );
    let ready = out
        .recv_timeout(Duration::from_secs(30))
        .context("the pipe producer did not start")?;
    let consumer_pids: Vec<u32> = ready
        .strip_prefix("ready pids=")
        .context("unexpected first line from the pipe producer")?
        .split(',')
        .filter_map(|p| p.parse().ok())
        .collect();
    let label = format!("bench pipe {}x{} x{}", cfg.width, cfg.height, cfg.consumers);
    wait_with_progress(&format!("{label} (warm-up)"), cfg.warmup);
    let mut pids = vec![producer.pid()];
    pids.extend(&consumer_pids);
    let (t0, cpu0) = (Instant::now(), sample(&pids));
    wait_with_progress(&label, cfg.duration);
    let cpu1 = sample(&pids);
    let secs = t0.elapsed().as_secs_f64();
    #[cfg(unix)]
    producer.signal(rustix::process::Signal::TERM)?;
    let summary: PipeSummary = last_json(&out, Duration::from_secs(60))?;
    producer.wait(Duration::from_secs(10))?;
    let (cpu, rss) = cpu_and_rss(&cpu0, &cpu1, 0, secs);
    let mut processes = vec![ProcResult {
        role: "producer",
        pid: pids[0],
        max_fps: None,
        fps: summary.fps,
        frames: summary.frames,
        cpu_pct: cpu,
        peak_rss_mib: rss,
        publish_us: Some(summary.publish_us_mean),
        latency_us: None,
        coalesced: None,
        bad_frames: None,
    }];
    for (i, s) in summary.consumers.iter().enumerate() {
        processes.push(consumer_result(
            pids[i + 1],
            cfg.rate_of(i),
            s,
            cpu_and_rss(&cpu0, &cpu1, i + 1, secs),
        ));
    }
    Ok(finish(cfg, memcpy, secs, processes))
}
