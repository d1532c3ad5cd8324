//! The processes a run measures: a producer and consumers of this binary
//! on a bus of their own, started and waited for, and the bus read while
//! they run.

use std::io::IsTerminal;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use framebus_consumer::{inspect, BusSnapshot};
use shm_layout::BusName;

use super::RunConfig;
use crate::cmd::child::{lines, stoppable, Reaper};

static RUNS: AtomicU32 = AtomicU32::new(0);

pub(super) fn exe() -> anyhow::Result<std::path::PathBuf> {
    std::env::current_exe().context("cannot find the framebus binary to start")
}

/// Waits `secs`, showing progress on a terminal (a redrawn line on stderr:
/// one write every 250 ms, nothing else, so it does not disturb the run).
pub(super) fn wait_with_progress(label: &str, secs: f64) {
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let total = Duration::from_secs_f64(secs);
    while start.elapsed() < total {
        if tty {
            eprint!(
                "\r{label}: {:.1}/{secs:.1} s ",
                start.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep((total - start.elapsed().min(total)).min(Duration::from_millis(250)));
    }
    if tty {
        eprint!("\r{:width$}\r", "", width = label.len() + 24);
    }
}

/// A bus name unique to this bench run.
pub(super) fn bench_bus() -> anyhow::Result<BusName> {
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    Ok(BusName::new(&format!("bench-{}-{n}", std::process::id()))?)
}

/// Starts a producer and waits for its ready line.
pub(super) fn start_producer(
    bus: &BusName,
    cfg: &RunConfig,
    max_consumers: u32,
) -> anyhow::Result<(Reaper, std::sync::mpsc::Receiver<String>)> {
    let size = format!("{}x{}", cfg.width, cfg.height);
    let mut cmd = Command::new(exe()?);
    cmd.args([
        "produce",
        "--bus",
        bus.as_str(),
        "--size",
        &size,
        "--fps",
        &cfg.fps.to_string(),
        "--format",
        cfg.format.name(),
    ])
    // Its consumers hold one frame at a time: one pin each, as the
    // figures in doc/BENCHMARKS.md were measured.
    .args(["--pins-per-consumer", "1"])
    .args([
        "--max-consumers",
        &max_consumers.to_string(),
        "--warmup",
        &cfg.warmup.to_string(),
        "--json",
    ])
    .stdout(Stdio::piped());
    stoppable(&mut cmd);
    let mut child = Reaper(Some(cmd.spawn().context("cannot start the producer")?));
    let out = lines(
        child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("producer stdout")?,
    );
    match out.recv_timeout(Duration::from_secs(30)) {
        Ok(l) if l.starts_with("ready ") => Ok((child, out)),
        _ => bail!("the producer did not become ready within 30 s"),
    }
}

/// Starts a consumer and waits for its attached line.
pub(super) fn start_consumer(
    bus: &BusName,
    args: &[&str],
) -> anyhow::Result<(Reaper, std::sync::mpsc::Receiver<String>)> {
    let mut cmd = Command::new(exe()?);
    cmd.args(["consume", "--bus", bus.as_str(), "--json"])
        .args(args)
        .stdout(Stdio::piped());
    stoppable(&mut cmd);
    let mut child = Reaper(Some(cmd.spawn().context("cannot start a consumer")?));
    let out = lines(
        child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("consumer stdout")?,
    );
    match out.recv_timeout(Duration::from_secs(30)) {
        Ok(l) if l.starts_with("attached ") => Ok((child, out)),
        _ => bail!("a consumer did not attach within 30 s"),
    }
}

/// Ends a process at once (SIGKILL on Unix, `TerminateProcess` on Windows).
pub(super) fn kill(child: &mut Reaper) -> anyhow::Result<()> {
    #[cfg(unix)]
    child.signal(rustix::process::Signal::KILL)?;
    #[cfg(not(unix))]
    if let Some(c) = child.0.as_mut() {
        c.kill()
            .with_context(|| format!("cannot end process {}", c.id()))?;
    }
    Ok(())
}

pub(super) fn snapshot(bus: &BusName) -> anyhow::Result<BusSnapshot> {
    inspect(bus).with_context(|| format!("cannot read bus {bus}"))
}

#[derive(serde::Deserialize)]
pub(super) struct ProducerJson {
    pub(super) publish_us_mean: f64,
}
