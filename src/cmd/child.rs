//! Child processes of `demo` and `bench`: killed if the parent gives up,
//! their stdout read line by line with timeouts, their /proc figures.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// Kills a child on drop, so an early error leaves no process behind.
pub struct Reaper(pub Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Lines of a child's stdout, read on a thread so waits can time out.
pub fn lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The last line that parses as JSON before the child's stdout closes.
pub fn last_json<T: for<'de> Deserialize<'de>>(
    rx: &mpsc::Receiver<String>,
    timeout: Duration,
) -> anyhow::Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Ok(v) = serde_json::from_str(&line) {
                    last = Some(v);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("a child process did not finish within {timeout:?}")
            }
        }
    }
    last.context("a child process exited without its JSON summary (see its error above)")
}

/// Lets [`Reaper::stop`] stop a `produce` or `consume` process: nothing to
/// add on Unix (SIGTERM); elsewhere (Windows has no SIGTERM) the process is
/// told to stop once its stdin closes (`--stop-on-stdin-eof`).
pub fn stoppable(cmd: &mut Command) {
    if cfg!(not(unix)) {
        cmd.arg("--stop-on-stdin-eof").stdin(Stdio::piped());
    }
}

impl Reaper {
    /// Asks a process started with [`stoppable`] to stop cleanly (and print
    /// its summary): SIGTERM on Unix; elsewhere its stdin is closed.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        #[cfg(unix)]
        self.signal(rustix::process::Signal::TERM)?;
        #[cfg(not(unix))]
        drop(self.0.as_mut().and_then(|c| c.stdin.take()));
        Ok(())
    }

    /// The child's pid (0 once it was reaped).
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal to the child.
    #[cfg(unix)]
    pub fn signal(&self, sig: rustix::process::Signal) -> anyhow::Result<()> {
        if let Some(c) = self.0.as_ref() {
            rustix::process::kill_process(rustix::process::Pid::from_child(c), sig)
                .with_context(|| format!("cannot signal process {}", c.id()))?;
        }
        Ok(())
    }

    /// Waits for the child to exit (bounded).
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let Some(c) = self.0.as_mut() else {
            return Ok(());
        };
        let deadline = std::time::Instant::now() + timeout;
        while c.try_wait()?.is_none() {
            if std::time::Instant::now() >= deadline {
                bail!("process {} did not exit within {timeout:?}", c.id());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.0 = None;
        Ok(())
    }
}

/// CPU time (user + system) and peak resident set of a process, from /proc.
#[cfg(unix)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcFigures {
    /// User + system CPU seconds so far.
    pub cpu_s: f64,
    /// Peak resident set size (VmHWM), KiB; it counts the shared memory
    /// pages the process touched.
    pub peak_rss_kib: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`. `None` if the
/// process is gone.
#[cfg(unix)]
pub fn proc_figures(pid: u32) -> Option<ProcFigures> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in ")".
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Some(ProcFigures {
        cpu_s: ticks as f64 / hz,
        peak_rss_kib,
    })
}
