//! The isolation scenario: a full-speed consumer's rate alone, then beside
//! a 1 fps consumer, a stopped one (SIGSTOP: Unix only) and one killed
//! mid-run.

use std::time::{Duration, Instant};

use framebus_consumer::BusSnapshot;
use serde::Serialize;

use super::processes::{
    bench_bus, kill, snapshot, start_consumer, start_producer, wait_with_progress, ProducerJson,
};
use super::RunConfig;
use crate::cmd::child::last_json;
use crate::cmd::consume::ConsumeSummary;

/// The isolation scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub(super) struct IsolationResult {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) fps_target: f64,
    pub(super) algo: String,
    pub(super) phases: Vec<Phase>,
    pub(super) bad_frames: u64,
    /// Phases this OS does not let the bench run (absent when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) not_measured: Vec<&'static str>,
}

/// One isolation phase.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Phase {
    pub(super) name: &'static str,
    pub(super) consumer_fps: f64,
    pub(super) ratio_to_alone: f64,
    pub(super) producer_fps: f64,
}

fn frames_of(s: &BusSnapshot, pid: u32) -> u64 {
    s.consumers
        .iter()
        .find(|c| c.pid == pid)
        .map_or(0, |c| c.frames)
}

pub(super) fn isolation(cfg: &RunConfig) -> anyhow::Result<IsolationResult> {
    let bus = bench_bus()?;
    let (mut producer, prod_out) = start_producer(&bus, cfg, 4)?;
    let total = (cfg.warmup + 4.0 * cfg.duration + 60.0).to_string();
    let (mut full, full_out) = start_consumer(
        &bus,
        &[
            "--algo",
            &cfg.algo,
            "--duration",
            &total,
            "--name",
            "full-speed",
        ],
    )?;
    let measure = |label: &str,
                   mid: Option<&mut dyn FnMut() -> anyhow::Result<()>>|
     -> anyhow::Result<(f64, f64)> {
        let (t0, s0) = (Instant::now(), snapshot(&bus)?);
        match mid {
            Some(action) => {
                wait_with_progress(label, cfg.duration / 2.0);
                action()?;
                wait_with_progress(label, cfg.duration / 2.0);
            }
            None => wait_with_progress(label, cfg.duration),
        }
        let s1 = snapshot(&bus)?;
        let secs = t0.elapsed().as_secs_f64();
        let consumer = (frames_of(&s1, full.pid()) - frames_of(&s0, full.pid())) as f64 / secs;
        let produced = (s1.frames_published - s0.frames_published) as f64 / secs;
        Ok((consumer, produced))
    };
    wait_with_progress("bench isolation (warm-up)", cfg.warmup);
    let mut phases = Vec::new();
    let alone = measure("isolation: alone", None)?;
    phases.push(("alone", alone));
    let (mut slow, _slow_out) = start_consumer(
        &bus,
        &["--algo", "mean", "--max-fps", "1", "--name", "one-fps"],
    )?;
    phases.push((
        "beside a 1 fps consumer",
        measure("isolation: beside 1 fps", None)?,
    ));
    // The phase beside a stopped consumer needs SIGSTOP.
    #[cfg(unix)]
    let not_measured: Vec<&'static str> = {
        slow.signal(rustix::process::Signal::STOP)?;
        phases.push((
            "beside a stopped consumer",
            measure("isolation: beside stopped", None)?,
        ));
        Vec::new()
    };
    #[cfg(not(unix))]
    let not_measured =
        vec!["beside a stopped consumer: not measured on this OS (SIGSTOP is Unix's)"];
    let (mut victim, _victim_out) =
        start_consumer(&bus, &["--algo", "busy:20", "--name", "victim"])?;
    let mut kill_victim = || kill(&mut victim);
    phases.push((
        "beside a consumer killed mid-run",
        measure("isolation: beside killed", Some(&mut kill_victim))?,
    ));
    full.stop()?;
    let summary: ConsumeSummary = last_json(&full_out, Duration::from_secs(30))?;
    full.wait(Duration::from_secs(10))?;
    kill(&mut slow)?;
    producer.stop()?;
    let _: ProducerJson = last_json(&prod_out, Duration::from_secs(30))?;
    producer.wait(Duration::from_secs(10))?;
    let base = alone.0.max(1e-9);
    Ok(IsolationResult {
        width: cfg.width,
        height: cfg.height,
        fps_target: cfg.fps,
        algo: cfg.algo.clone(),
        phases: phases
            .into_iter()
            .map(|(name, (c, p))| Phase {
                name,
                consumer_fps: c,
                ratio_to_alone: c / base,
                producer_fps: p,
            })
            .collect(),
        bad_frames: summary.bad_frames,
        not_measured,
    })
}
