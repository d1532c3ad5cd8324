//! Starting and signalling chaos's processes: the producer and the verify
//! consumers, directly or in a simulated container (`unshare`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

use anyhow::{bail, Context};
#[cfg(unix)]
use rustix::process::{Pid, Signal, WaitOptions};
use shm_layout::BusName;

use super::stderr::{Counters, StderrLine};
use crate::cmd::child::{stoppable, Reaper};

/// What chaos does to a process. On Linux each is a signal; on Windows only
/// `Kill` (`TerminateProcess`) and `Term` (its stdin closed, which
/// `--stop-on-stdin-eof` turns into a clean stop) exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Act {
    /// SIGKILL / TerminateProcess.
    Kill,
    /// A clean stop: SIGTERM / stdin closed.
    Term,
    /// SIGSTOP (Linux only).
    Stop,
    /// SIGCONT (Linux only; nothing to do elsewhere).
    Cont,
    /// SIGUSR1: the consumer's fork check (Linux only).
    ForkCheck,
}

#[cfg(unix)]
impl Act {
    fn signal(self) -> Signal {
        match self {
            Self::Kill => Signal::KILL,
            Self::Term => Signal::TERM,
            Self::Stop => Signal::STOP,
            Self::Cont => Signal::CONT,
            Self::ForkCheck => Signal::USR1,
        }
    }
}

/// A started producer or consumer: the process chaos spawned (in
/// namespace mode the `unshare` wrapper) and the framebus process itself
/// (in namespace mode the wrapper's first child, pid 1 of its namespace).
pub(super) struct Proc {
    pub(super) child: Reaper,
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(super) namespaced: bool,
    /// Host pid of the framebus process, once known.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(super) real: Option<u32>,
}

impl Proc {
    /// The framebus process's host pid; in namespace mode `None` until
    /// the wrapper has started it.
    #[cfg(unix)]
    pub(super) fn real_pid(&mut self) -> Option<u32> {
        if !self.namespaced {
            return Some(self.child.pid());
        }
        if self.real.is_none() {
            let w = self.child.pid();
            self.real = std::fs::read_to_string(format!("/proc/{w}/task/{w}/children"))
                .ok()
                .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()));
        }
        self.real
    }

    /// Sends `sig` to the framebus process (waiting up to 10 s for the
    /// wrapper to start it). SIGKILL goes to the wrapper instead, which
    /// takes its child with it (`--kill-child`), as a container runtime's
    /// kill would.
    #[cfg(unix)]
    pub(super) fn signal(&mut self, act: Act) -> anyhow::Result<()> {
        let sig = act.signal();
        if !self.namespaced || sig == Signal::KILL {
            return self.child.signal(sig);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(p) = self.real_pid() {
                break p;
            }
            if Instant::now() >= deadline {
                bail!("unshare (pid {}) started no child", self.child.pid());
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let pid = Pid::from_raw(pid as i32).context("pid 0")?;
        rustix::process::kill_process(pid, sig)
            .with_context(|| format!("cannot signal process {pid:?}"))
    }

    /// SIGKILLs it and waits until the framebus process is gone too (in
    /// namespace mode it was reparented to chaos, the subreaper: reaped
    /// here).
    #[cfg(unix)]
    pub(super) fn kill(&mut self) -> anyhow::Result<()> {
        let real = self.real_pid();
        self.signal(Act::Kill)?;
        self.child.wait(Duration::from_secs(10))?;
        let Some(real) = real.filter(|_| self.namespaced) else {
            return Ok(());
        };
        let pid = Pid::from_raw(real as i32).context("pid 0")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
                Ok(Some(_)) => return Ok(()),
                // Not (yet) our child: gone if /proc no longer has it.
                Err(rustix::io::Errno::CHILD)
                    if !std::path::Path::new(&format!("/proc/{real}")).exists() =>
                {
                    return Ok(())
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                bail!("process {real} (in a namespace) did not die within 10 s of its wrapper's SIGKILL");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(windows)]
impl Proc {
    /// The process's pid (there are no namespaces on Windows).
    pub(super) fn real_pid(&mut self) -> Option<u32> {
        Some(self.child.pid())
    }

    /// `Kill`: TerminateProcess; `Term`: closes its stdin (the child runs
    /// with `--stop-on-stdin-eof`); `Cont`: nothing (nothing is stopped).
    pub(super) fn signal(&mut self, act: Act) -> anyhow::Result<()> {
        let Some(c) = self.child.0.as_mut() else {
            return Ok(());
        };
        match act {
            Act::Kill => c
                .kill()
                .with_context(|| format!("cannot terminate process {}", c.id())),
            Act::Term => self.child.stop(),
            Act::Cont => Ok(()),
            Act::Stop | Act::ForkCheck => bail!("{act:?} needs Linux signals"),
        }
    }

    /// TerminateProcess, then waits until it is gone.
    pub(super) fn kill(&mut self) -> anyhow::Result<()> {
        self.signal(Act::Kill)?;
        self.child.wait(Duration::from_secs(10))
    }
}

/// A running verify consumer.
pub(super) struct Consumer {
    pub(super) proc: Proc,
    /// `chaos-<i>-<start>`: unique per start, so it names its entry.
    pub(super) name: String,
    pub(super) out: mpsc::Receiver<String>,
    /// Whether its `attached` line was read.
    pub(super) attached: bool,
    /// Fork checks asked of it (SIGUSR1s sent) and finished (its stderr).
    pub(super) forks_asked: u64,
    pub(super) forks_done: Arc<AtomicU64>,
}

impl Consumer {
    /// Reads its `attached` line if it is there (without waiting).
    pub(super) fn poll_attached(&mut self) -> bool {
        if !self.attached {
            if let Ok(line) = self.out.try_recv() {
                self.attached = line.starts_with("attached ");
            }
        }
        self.attached
    }
}

pub(super) fn exe() -> anyhow::Result<std::path::PathBuf> {
    std::env::current_exe().context("cannot find the framebus binary")
}

fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.env("RUST_LOG", "warn")
}

/// A command running framebus: directly, or in namespace mode in a
/// simulated container (the form of the tests' `Bus::container_command`);
/// framebus's own arguments follow.
fn framebus(namespaced: bool) -> anyhow::Result<Command> {
    if !namespaced {
        return Ok(Command::new(exe()?));
    }
    let mut c = Command::new("unshare");
    c.args([
        "--pid",
        "--fork",
        "--kill-child",
        "--mount",
        "--mount-proc",
        "--",
        "sh",
        "-c",
        "mount -t tmpfs tmpfs /tmp && exec \"$0\" \"$@\"",
    ])
    .arg(exe()?);
    Ok(c)
}

/// Why namespace mode cannot run here, if it cannot.
#[cfg(not(unix))]
pub(super) fn namespaces_unavailable() -> Option<String> {
    Some("simulated containers need Linux (unshare)".into())
}

/// Why namespace mode cannot run here, if it cannot.
#[cfg(unix)]
pub(super) fn namespaces_unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("it needs root (it creates pid and mount namespaces)".into());
    }
    match Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount", "--mount-proc"])
        .args(["--", "sh", "-c", "mount -t tmpfs tmpfs /tmp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!(
            "`unshare --pid --fork --mount --mount-proc` with a tmpfs /tmp failed here ({s})"
        )),
        Err(e) => Some(format!("cannot run `unshare` (util-linux): {e}")),
    }
}

pub(super) fn start_producer(
    bus: &BusName,
    size: &str,
    max_consumers: u32,
    namespaced: bool,
) -> anyhow::Result<Proc> {
    let mut cmd = framebus(namespaced)?;
    quiet(&mut cmd)
        .args([
            "produce",
            "--bus",
            bus.as_str(),
            "--size",
            size,
            "--fps",
            "0",
        ])
        .args(["--max-consumers", &max_consumers.to_string()])
        .stdout(Stdio::piped());
    stoppable(&mut cmd);
    let mut child = Reaper(Some(cmd.spawn().context("cannot start the producer")?));
    let stdout = child
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .context("producer stdout")?;
    let mut first = String::new();
    // The ready line comes within milliseconds; a bounded read on a thread.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let _ = r.read_line(&mut first);
        let _ = tx.send(first);
        // Keep draining so the producer never blocks on a full stdout.
        let mut sink = String::new();
        while r.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(l) if l.starts_with("ready ") => Ok(Proc {
            child,
            namespaced,
            real: None,
        }),
        _ => bail!("the producer did not become ready within 20 s"),
    }
}

/// What each consumer start needs to know.
pub(super) struct ConsumerSpec<'a> {
    pub(super) bus: &'a BusName,
    pub(super) namespaced: bool,
    pub(super) forks: bool,
    pub(super) counters: &'a Arc<Counters>,
}

pub(super) fn start_consumer(spec: &ConsumerSpec<'_>, name: String) -> anyhow::Result<Consumer> {
    let bus = spec.bus;
    let mut cmd = framebus(spec.namespaced)?;
    quiet(&mut cmd)
        .args([
            "consume",
            "--bus",
            bus.as_str(),
            "--algo",
            "verify",
            "--json",
            "--wait",
            "30",
        ])
        .args(["--name", &name])
        .args(spec.forks.then_some("--fork-check-on-usr1"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    stoppable(&mut cmd);
    let mut child = Reaper(Some(cmd.spawn().context("cannot start a consumer")?));
    let out = crate::cmd::child::lines(
        child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("consumer stdout")?,
    );
    let stderr = child
        .0
        .as_mut()
        .and_then(|c| c.stderr.take())
        .context("consumer stderr")?;
    // Count "bad frame" warnings and fork checks as they are written, so
    // those of consumers that are killed later still count.
    let counters = Arc::clone(spec.counters);
    let forks_done = Arc::new(AtomicU64::new(0));
    let done = Arc::clone(&forks_done);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let kind = StderrLine::classify(&line);
            if counters.count(kind) {
                done.fetch_add(1, Ordering::Relaxed);
            }
            if matches!(kind, StderrLine::BadFrame | StderrLine::ForkFailed) {
                eprintln!("{line}");
            }
        }
    });
    Ok(Consumer {
        proc: Proc {
            child,
            namespaced: spec.namespaced,
            real: None,
        },
        name,
        out,
        attached: false,
        forks_asked: 0,
        forks_done,
    })
}

/// Waits for the consumer's first stdout line, `attached bus=...`.
pub(super) fn wait_attached(c: &mut Consumer, timeout: Duration) -> anyhow::Result<()> {
    if c.attached {
        return Ok(());
    }
    match c.out.recv_timeout(timeout) {
        Ok(line) if line.starts_with("attached ") => {
            c.attached = true;
            Ok(())
        }
        Ok(line) => bail!("expected its `attached` line first, got {line:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            bail!("it exited before attaching (see its error above)")
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            bail!("it did not attach within {} s", timeout.as_secs())
        }
    }
}
