//! `framebus consume`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use framebus_consumer::{builtin, Algorithm, Consumer, ConsumerConfig, ConsumerError, Frame};
#[cfg(unix)]
use rustix::process::{Pid, Signal, WaitOptions};
use serde::{Deserialize, Serialize};

use crate::parse::{parse_max_fps, parse_seconds};
use crate::report::{Latencies, LatencyUs, RateMeter};

/// `framebus consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Bus name.
    #[arg(long)]
    pub bus: String,
    /// Algorithm: mean | verify | busy:MS.
    #[arg(long, default_value = "mean")]
    pub algo: String,
    /// Process at most this many frames per second (always the newest);
    /// 0 = no limit (the default).
    #[arg(long, value_parser = parse_max_fps)]
    pub max_fps: Option<f64>,
    /// Stop after this many frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Leave the first SECONDS out of the summary's figures (steady state only).
    #[arg(long, value_parser = parse_seconds)]
    pub warmup: Option<f64>,
    /// Wait up to this many seconds for the bus to appear instead of failing.
    #[arg(long, value_parser = parse_seconds)]
    pub wait: Option<f64>,
    /// Name shown by `inspect` (16 bytes kept).
    #[arg(long)]
    pub name: Option<String>,
    /// Print a JSON summary as the last stdout line at exit.
    #[arg(long)]
    pub json: bool,
    /// (for `chaos --forks`) On each SIGUSR1, keep the next frame, fork, and
    /// check that the child is refused the consumer (`Forked`) and that the
    /// held frame stays byte-identical; results on stderr (`fork check
    /// passed`/`fork check failed`) and in the JSON summary.
    #[arg(long, hide = true)]
    pub fork_check_on_usr1: bool,
    /// (internal, for `bench` and `chaos`) Stop as on SIGTERM once stdin is
    /// closed: how they stop their processes on Windows, which has no SIGTERM.
    #[arg(long, hide = true)]
    pub stop_on_stdin_eof: bool,
}

/// The JSON summary `consume --json` prints last.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumeSummary {
    pub bus: String,
    pub algo: String,
    pub frames: u64,
    pub seconds: f64,
    pub fps: f64,
    pub bad_frames: u64,
    pub reattached: u64,
    pub coalesced: u64,
    /// Frames skipped between frames taken (sequence gaps summed).
    #[serde(default)]
    pub skipped: u64,
    pub latency_us: LatencyUs,
    pub last_value: Option<f64>,
}

/// What `consume --json` prints: the summary, plus the fork checks when
/// `--fork-check-on-usr1` was given.
#[derive(Serialize)]
struct Printed<'a> {
    #[serde(flatten)]
    summary: &'a ConsumeSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    fork_checks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fork_failures: Option<u64>,
}

/// Per-attachment bookkeeping of the frames taken.
struct Progress {
    instance: u64,
    /// Coalesced triggers of producers that are gone (each new producer's
    /// counter starts from 0 again).
    coalesced_past: u64,
    latencies: Latencies,
    /// The rate counts intervals between frames taken, not frames over time.
    rate: RateMeter,
}

impl Progress {
    /// Hands one frame to the algorithm (setting it up again for a new
    /// producer). `coalesced_now` is the consumer's count before the take.
    fn take(
        &mut self,
        frame: &Frame<'_>,
        coalesced_now: u64,
        algo: &mut dyn Algorithm,
        name: &str,
    ) -> anyhow::Result<()> {
        if frame.instance_id() != self.instance {
            if self.instance != 0 {
                // A new producer: its counter starts again from 0.
                self.coalesced_past += coalesced_now;
            }
            self.instance = frame.instance_id();
            algo.setup(&frame.bus())
                .map_err(|m| anyhow::anyhow!("algorithm {name} setup failed: {m}"))?;
        }
        self.latencies.record(frame.latency_ns());
        self.rate.tick(Instant::now());
        algo.process(&frame.view())
            .map_err(|m| anyhow::anyhow!("algorithm {name} failed on frame {}: {m}", frame.seq()))
    }
}

/// Exit statuses of the fork check's child.
#[cfg(unix)]
const CHILD_GOT_FORKED: i32 = 0;
#[cfg(unix)]
const CHILD_GOT_OTHER_ERROR: i32 = 3;
#[cfg(unix)]
const CHILD_GOT_FRAME: i32 = 4;

/// `fork()`: `Some(child pid)` in the parent, `None` in the child.
#[cfg(unix)]
fn fork() -> std::io::Result<Option<Pid>> {
    // SAFETY: fork itself has no memory-safety preconditions; the danger is
    // what the child does afterwards in a process that might have other
    // threads (whose locks the child inherits held). `consume` runs no
    // threads of its own (the signal flags are set from handlers, tracing
    // writes synchronously) but, with `--stop-on-stdin-eof`, one that blocks
    // reading stdin under stdin's lock, which the child never takes; the
    // child (see `fork_check`) only reads
    // its own fork guard (getpid) and gets an error value (one small heap
    // allocation: glibc's fork takes and re-initialises the malloc locks
    // around the fork, so malloc is usable in the child), drops frames and
    // the consumer — which in a child only munmap and close, touching
    // nothing shared — and `_exit`s without running atexit handlers or
    // flushing stdio buffers shared with the parent.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(None),
        p => Ok(Pid::from_raw(p)),
    }
}

/// Waits (bounded) for the fork check's child; kills it if it hangs.
/// `Err` describes any outcome other than "it got `Forked`".
#[cfg(unix)]
fn wait_fork_child(child: Pid) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rustix::process::waitpid(Some(child), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => {
                return match status.exit_status() {
                    Some(CHILD_GOT_FORKED) => Ok(()),
                    Some(CHILD_GOT_OTHER_ERROR) => {
                        Err("the child got another error than Forked".into())
                    }
                    Some(CHILD_GOT_FRAME) => {
                        Err("the child got a frame (or none) instead of Forked".into())
                    }
                    Some(n) => Err(format!("the child exited with status {n}")),
                    None => Err(format!("the child ended abnormally ({status:?})")),
                };
            }
            Ok(None) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("cannot wait for the child: {e}")),
        }
        if Instant::now() >= deadline {
            let _ = rustix::process::kill_process(child, Signal::KILL);
            let _ = rustix::process::waitpid(Some(child), WaitOptions::empty());
            return Err("the child did not exit within 10 s (killed)".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The fork check, in the parent: `frame` (kept with `next_frame_owned`)
/// must be byte-identical to `copy` after the child `child` has tried the
/// consumer and exited, and a moment later.
#[cfg(unix)]
fn fork_check_parent(child: Pid, frame: &Frame<'static>, copy: &[u8]) -> Result<(), String> {
    let outcome = wait_fork_child(child);
    // A producer that wrongly took the entry over would rewrite the slot
    // within milliseconds: hold the frame a little longer.
    std::thread::sleep(Duration::from_millis(20));
    if frame.pixels() != copy {
        let changed = frame
            .pixels()
            .iter()
            .zip(copy)
            .filter(|(a, b)| a != b)
            .count();
        return Err(format!(
            "held frame {} (slot {}) changed under its pin: {changed} bytes differ{}",
            frame.seq(),
            frame.slot(),
            outcome
                .err()
                .map(|e| format!("; also {e}"))
                .unwrap_or_default()
        ));
    }
    outcome
}

/// A bus truncated under this consumer is named and survived (the next
/// call waits for the re-created bus); any other error ends the run.
fn survive_truncation(bus: &shm_layout::BusName, e: ConsumerError) -> anyhow::Result<()> {
    match e {
        ConsumerError::BusTruncated { .. } => {
            tracing::warn!(bus = %bus, "{e}");
            Ok(())
        }
        e => Err(e.into()),
    }
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let bus = super::bus_name(&args.bus)?;
    let mut algo = builtin(&args.algo).context("bad --algo")?;
    let config = ConsumerConfig {
        name: args.name.clone().unwrap_or_else(|| args.algo.clone()),
        max_fps: crate::parse::limit(args.max_fps),
        ..ConsumerConfig::new(bus.clone())
    };
    let stop = super::stop_flag_or_stdin_eof(args.stop_on_stdin_eof)?;
    // Installed before attaching: a SIGUSR1 sent after the `attached` line
    // never meets the default action (which would end the process).
    #[cfg(unix)]
    let fork_request = if args.fork_check_on_usr1 {
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&flag))
            .context("cannot install the SIGUSR1 handler")?;
        Some(flag)
    } else {
        None
    };
    #[cfg(not(unix))]
    let fork_request: Option<Arc<AtomicBool>> = if args.fork_check_on_usr1 {
        anyhow::bail!("--fork-check-on-usr1 needs fork and SIGUSR1 (Linux)");
    } else {
        None
    };
    let mut consumer = match args.wait {
        Some(s) => Consumer::attach_wait(config, Duration::from_secs_f64(s)),
        None => Consumer::attach(config),
    }
    .map_err(|e| super::attach_error(&bus, e))?;
    if let Some(info) = consumer.info() {
        println!(
            "attached bus={bus} entry={} pid={}",
            info.entry,
            std::process::id()
        );
    }
    let mut started = Instant::now();
    let deadline = args.duration.map(|s| started + Duration::from_secs_f64(s));
    let mut warmup_end = args.warmup.map(|s| started + Duration::from_secs_f64(s));
    let mut progress = Progress {
        instance: 0,
        coalesced_past: 0,
        latencies: Latencies::new(),
        rate: RateMeter::default(),
    };
    // Figures count from `started`, `frames_before` and `coalesced_before`
    // (moved to the end of the warm-up, if any).
    let (mut frames_before, mut coalesced_before, mut skipped_before) = (0u64, 0u64, 0u64);
    #[cfg_attr(not(unix), allow(unused_mut))]
    let (mut fork_checks, mut fork_failures) = (0u64, 0u64);
    let mut fork_pending = false;
    loop {
        if warmup_end.is_some_and(|w| Instant::now() >= w) {
            warmup_end = None;
            started = Instant::now();
            frames_before = consumer.frames();
            skipped_before = consumer.skipped();
            coalesced_before = progress.coalesced_past + consumer.coalesced();
            progress.latencies = Latencies::new();
            progress.rate = RateMeter::default();
        }
        if stop.load(Ordering::Relaxed) || args.frames.is_some_and(|n| consumer.frames() >= n) {
            break;
        }
        let mut wait = Duration::from_millis(100);
        if let Some(d) = deadline {
            let now = Instant::now();
            if now >= d {
                break;
            }
            wait = wait.min(d - now);
        }
        if fork_request
            .as_ref()
            .is_some_and(|f| f.swap(false, Ordering::Relaxed))
        {
            fork_pending = true;
        }
        let coalesced_now = consumer.coalesced();
        if !fork_pending {
            let frame = match consumer.next_frame(Some(wait)) {
                Ok(Some(frame)) => frame,
                Ok(None) => continue,
                Err(e) => {
                    survive_truncation(&bus, e)?;
                    continue;
                }
            };
            progress.take(&frame, coalesced_now, algo.as_mut(), &args.algo)?;
            continue;
        }
        // The fork check: keep a frame, copy it, fork; the child must be
        // refused the consumer, the frame must not change.
        #[cfg(unix)]
        {
            let frame = match consumer.next_frame_owned(Some(wait)) {
                Ok(Some(frame)) => frame,
                Ok(None) => continue,
                Err(e) => {
                    survive_truncation(&bus, e)?;
                    continue;
                }
            };
            fork_pending = false;
            progress.take(&frame, coalesced_now, algo.as_mut(), &args.algo)?;
            let copy = frame.pixels().to_vec();
            let outcome = match fork() {
                Ok(None) => {
                    // The child: the consumer is the parent's.
                    let status = match consumer.next_frame(Some(Duration::ZERO)) {
                        Err(ConsumerError::Forked { .. }) => CHILD_GOT_FORKED,
                        Err(_) => CHILD_GOT_OTHER_ERROR,
                        Ok(_) => CHILD_GOT_FRAME,
                    };
                    // In a child these drops only unmap and close.
                    drop(frame);
                    drop(copy);
                    drop(consumer);
                    // SAFETY: `_exit` ends the child at once, without atexit
                    // handlers or stdio flushes that could act on state it
                    // shares with the parent; nothing here needs unwinding.
                    unsafe { libc::_exit(status) }
                }
                Ok(Some(child)) => fork_check_parent(child, &frame, &copy),
                Err(e) => Err(format!("fork failed: {e}")),
            };
            fork_checks += 1;
            match outcome {
            Ok(()) => eprintln!(
                "fork check passed: the child was refused the consumer (Forked), held frame {} unchanged",
                frame.seq()
            ),
            Err(why) => {
                fork_failures += 1;
                eprintln!("fork check failed on bus {bus}: {why}");
            }
        }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    algo.teardown()
        .map_err(|m| anyhow::anyhow!("algorithm {} teardown failed: {m}", args.algo))?;
    let summary = algo.summary();
    let frames = consumer.frames() - frames_before;
    let report = ConsumeSummary {
        bus: bus.to_string(),
        algo: args.algo.clone(),
        frames,
        seconds,
        fps: progress.rate.fps(),
        bad_frames: summary.bad_frames,
        reattached: consumer.reattached(),
        coalesced: (progress.coalesced_past + consumer.coalesced())
            .saturating_sub(coalesced_before),
        skipped: consumer.skipped() - skipped_before,
        latency_us: progress.latencies.summary(),
        last_value: summary.last_value,
    };
    if args.json {
        let forks = args.fork_check_on_usr1;
        let printed = Printed {
            summary: &report,
            fork_checks: forks.then_some(fork_checks),
            fork_failures: forks.then_some(fork_failures),
        };
        println!("{}", serde_json::to_string(&printed)?);
    } else {
        let l = report.latency_us;
        println!(
            "bus {}: {} frames in {:.1} s ({:.1} fps), {} skipped, {} bad, re-attached {}x, {} triggers coalesced, latency p50 {:.0} us p99 {:.0} us max {:.0} us",
            report.bus, report.frames, report.seconds, report.fps, report.skipped, report.bad_frames, report.reattached, report.coalesced, l.p50, l.p99, l.max
        );
    }
    if args.fork_check_on_usr1 && !args.json {
        println!("fork checks: {fork_checks}, failed: {fork_failures}");
    }
    Ok(if report.bad_frames > 0 || fork_failures > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
