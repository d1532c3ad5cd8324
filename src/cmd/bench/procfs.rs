//! CPU time and peak RSS of the measured processes (from /proc), and
//! pinning them to CPUs (`--producer-cpu`).

use anyhow::{bail, Context};
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

use crate::cmd::child::{proc_figures, ProcFigures};

/// The CPU set `{cpu}` and the set of every other CPU this process may use.
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

pub(super) fn sample(pids: &[u32]) -> Vec<ProcFigures> {
    pids.iter()
        .map(|&p| proc_figures(p).unwrap_or_default())
        .collect()
}

pub(super) fn cpu_pct(a: &ProcFigures, b: &ProcFigures, secs: f64) -> f64 {
    (b.cpu_s - a.cpu_s).max(0.0) / secs.max(1e-9) * 100.0
}
