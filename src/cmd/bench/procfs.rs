//! CPU time and peak RSS of the measured processes (from /proc), and
//! pinning them to CPUs (`--producer-cpu`): Linux only. Elsewhere a sample
//! holds nothing and every figure is `None` (not measured on this OS).

#[cfg(unix)]
use anyhow::{bail, Context};
#[cfg(unix)]
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

#[cfg(unix)]
use crate::cmd::child::{proc_figures, ProcFigures};

/// Why the figures of this module are missing on this OS.
pub(super) const NOT_MEASURED: &str =
    "CPU and peak RSS not measured on this OS (they come from Linux's /proc)";

/// The measured processes' CPU time and peak RSS at one instant.
pub(super) struct Sample {
    #[cfg(unix)]
    figures: Vec<ProcFigures>,
}

/// The CPU set `{cpu}` and the set of every other CPU this process may use.
#[cfg(unix)]
pub(super) fn cpu_split(cpu: usize) -> anyhow::Result<(CpuSet, CpuSet)> {
    let allowed = sched_getaffinity(None).context("cannot read this process's CPU affinity")?;
    let usable: Vec<usize> = (0..CpuSet::MAX_CPU)
        .filter(|&c| allowed.is_set(c))
        .collect();
    if !usable.contains(&cpu) || usable.len() < 2 {
        bail!("--producer-cpu {cpu}: this process may run on CPUs {usable:?}; pick one of them, and at least one must remain for the consumers");
    }
    let (mut only, mut others) = (CpuSet::new(), CpuSet::new());
    only.set(cpu);
    for &c in usable.iter().filter(|&&c| c != cpu) {
        others.set(c);
    }
    Ok((only, others))
}

/// Pins every thread of process `pid` to `cpus`.
#[cfg(unix)]
pub(super) fn pin_to(pid: u32, cpus: &CpuSet) -> anyhow::Result<()> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("cannot list the threads of process {pid}"))?;
    for task in tasks.flatten() {
        let tid = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok());
        if let Some(tid) = tid.and_then(rustix::process::Pid::from_raw) {
            sched_setaffinity(Some(tid), cpus)
                .with_context(|| format!("cannot pin thread {tid:?} of process {pid}"))?;
        }
    }
    Ok(())
}

/// The figures of processes `pids` now.
#[cfg_attr(not(unix), allow(unused_variables))]
pub(super) fn sample(pids: &[u32]) -> Sample {
    Sample {
        #[cfg(unix)]
        figures: pids
            .iter()
            .map(|&p| proc_figures(p).unwrap_or_default())
            .collect(),
    }
}

/// Process `i`'s (of the pids sampled) CPU use between samples `a` and `b`
/// taken `secs` apart, in percent of one CPU, and its peak RSS at `b`, in
/// MiB; `None` where not measured.
#[cfg(unix)]
pub(super) fn cpu_and_rss(
    a: &Sample,
    b: &Sample,
    i: usize,
    secs: f64,
) -> (Option<f64>, Option<f64>) {
    (
        Some(cpu_pct(&a.figures[i], &b.figures[i], secs)),
        Some(b.figures[i].peak_rss_kib as f64 / 1024.0),
    )
}

/// Not measured on this OS.
#[cfg(not(unix))]
pub(super) fn cpu_and_rss(_: &Sample, _: &Sample, _: usize, _: f64) -> (Option<f64>, Option<f64>) {
    (None, None)
}

#[cfg(unix)]
fn cpu_pct(a: &ProcFigures, b: &ProcFigures, secs: f64) -> f64 {
    (b.cpu_s - a.cpu_s).max(0.0) / secs.max(1e-9) * 100.0
}
