//! What a run measured: each process's figures and the run's totals.

use serde::Serialize;

use super::procfs::NOT_MEASURED;
use super::{RunConfig, Transport};
use crate::cmd::consume::ConsumeSummary;
use crate::report::LatencyUs;

/// One process's figures over the measured window.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ProcResult {
    pub(super) role: &'static str,
    pub(super) pid: u32,
    /// A consumer's rate limit, 0 = no limit; absent for the producer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) max_fps: Option<f64>,
    pub(super) fps: f64,
    pub(super) frames: u64,
    /// Percent of one CPU; `None` (null) where not measured.
    pub(super) cpu_pct: Option<f64>,
    /// `None` (null) where not measured.
    pub(super) peak_rss_mib: Option<f64>,
    pub(super) publish_us: Option<f64>,
    pub(super) latency_us: Option<LatencyUs>,
    pub(super) coalesced: Option<u64>,
    pub(super) bad_frames: Option<u64>,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RunResult {
    pub(super) transport: Transport,
    pub(super) width: u32,
    pub(super) height: u32,
    /// The bus's pixel format name.
    pub(super) format: &'static str,
    pub(super) consumers: u32,
    pub(super) algo: String,
    pub(super) fps_target: f64,
    pub(super) seconds: f64,
    pub(super) memcpy_fps: f64,
    pub(super) producer_fps: f64,
    pub(super) producer_vs_memcpy: f64,
    /// CPU time the producer spent per published frame: compared with the
    /// memcpy time it tells a slow publish path from a CPU-starved producer.
    /// `None` (null) where CPU time is not measured.
    pub(super) producer_cpu_us_per_frame: Option<f64>,
    /// The CPU the producer had to itself (`--producer-cpu`), if any.
    pub(super) producer_cpu: Option<usize>,
    pub(super) consumer_fps_mean: f64,
    pub(super) delivered_fps: f64,
    /// `None` (null) where CPU time is not measured.
    pub(super) cpu_us_per_delivered_frame: Option<f64>,
    pub(super) bad_frames: u64,
    pub(super) processes: Vec<ProcResult>,
    /// What this OS does not let the bench measure (absent when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) not_measured: Vec<&'static str>,
}

pub(super) fn consumer_result(
    pid: u32,
    max_fps: f64,
    s: &ConsumeSummary,
    (cpu, rss_mib): (Option<f64>, Option<f64>),
) -> ProcResult {
    ProcResult {
        role: "consumer",
        pid,
        max_fps: Some(max_fps),
        fps: s.fps,
        frames: s.frames,
        cpu_pct: cpu,
        peak_rss_mib: rss_mib,
        publish_us: None,
        latency_us: Some(s.latency_us),
        coalesced: Some(s.coalesced),
        bad_frames: Some(s.bad_frames),
    }
}

pub(super) fn finish(
    cfg: &RunConfig,
    memcpy: f64,
    seconds: f64,
    processes: Vec<ProcResult>,
) -> RunResult {
    let producer_fps = processes.first().map_or(0.0, |p| p.fps);
    let producer_cpu_us_per_frame = processes.first().map_or(Some(0.0), |p| {
        p.cpu_pct.map(|cpu| {
            if p.fps > 0.0 {
                cpu / 100.0 / p.fps * 1e6
            } else {
                0.0
            }
        })
    });
    let consumers: Vec<&ProcResult> = processes.iter().filter(|p| p.role == "consumer").collect();
    let delivered_fps: f64 = consumers.iter().map(|c| c.fps).sum();
    // None if any process's CPU time is not measured.
    let cpu_total_s: Option<f64> = processes
        .iter()
        .map(|p| p.cpu_pct.map(|cpu| cpu / 100.0 * seconds))
        .sum();
    let delivered = delivered_fps * seconds;
    RunResult {
        transport: cfg.transport,
        width: cfg.width,
        height: cfg.height,
        format: cfg.format.name(),
        consumers: cfg.consumers,
        algo: cfg.algo.clone(),
        fps_target: cfg.fps,
        seconds,
        memcpy_fps: memcpy,
        producer_fps,
        producer_vs_memcpy: producer_fps / memcpy.max(1e-9),
        producer_cpu_us_per_frame,
        producer_cpu: cfg.producer_cpu,
        consumer_fps_mean: delivered_fps / consumers.len().max(1) as f64,
        delivered_fps,
        cpu_us_per_delivered_frame: cpu_total_s.map(|cpu_total_s| {
            if delivered > 0.0 {
                cpu_total_s * 1e6 / delivered
            } else {
                0.0
            }
        }),
        bad_frames: consumers.iter().filter_map(|c| c.bad_frames).sum(),
        not_measured: if processes.iter().any(|p| p.cpu_pct.is_none()) {
            vec![NOT_MEASURED]
        } else {
            Vec::new()
        },
        processes,
    }
}
