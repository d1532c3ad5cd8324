//! Harness for multi-process tests: real `framebus` processes on real shared
//! memory and FIFOs, a unique bus and trigger root per test, every wait
//! bounded, and cleanup (processes, shm object, FIFOs) even on panic.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod forged;
pub mod in_process;

pub const EXE: &str = env!("CARGO_BIN_EXE_framebus");

/// A test's private bus: name, trigger root, spawned processes. Drop kills
/// what is left and removes the shm object and the trigger directory.
pub struct Bus {
    pub name: String,
    pub root: PathBuf,
    children: Vec<Child>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Bus {
    pub fn new(test: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("t-{test}-{}-{n}", std::process::id());
        let root = std::env::temp_dir().join(format!("framebus-test-{name}"));
        std::fs::create_dir_all(&root).expect("create test runtime dir");
        Self {
            name,
            root,
            children: Vec::new(),
        }
    }

    /// Like [`Bus::new`], with the trigger root under `/dev/shm`, which
    /// simulated containers (private `/tmp`) share with the host.
    pub fn new_in_dev_shm(test: &str) -> Self {
        let mut bus = Self::new(test);
        let _ = std::fs::remove_dir_all(&bus.root);
        bus.root = PathBuf::from(format!("/dev/shm/framebus-test-{}", bus.name));
        std::fs::create_dir_all(&bus.root).expect("create test runtime dir in /dev/shm");
        bus
    }

    /// A `framebus` command run in a simulated container: its own pid and
    /// mount namespaces (`unshare --pid --fork --mount --mount-proc`) and a
    /// private `/tmp`; only `/dev/shm` (and the uid) are shared. The
    /// `framebus` process is pid 1 of its namespace.
    pub fn container_command(&self, args: &[&str]) -> Command {
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
        ])
        .arg("mount -t tmpfs tmpfs /tmp && exec \"$0\" \"$@\"")
        .arg(EXE)
        .args(args)
        .env("FRAMEBUS_RUNTIME_DIR", &self.root)
        .env("RUST_LOG", "info");
        c
    }

    /// Starts `cmd` with its stdout lines captured.
    pub fn spawn_command(&mut self, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let lines = line_channel(child.stdout.take().expect("stdout"));
        let stderr = drain(child.stderr.take().expect("stderr"));
        let pid = child.id();
        self.children.push(child);
        Proc {
            pid,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// The shm object's path.
    pub fn shm_path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/shm/framebus.{}", self.name))
    }

    /// This bus's trigger directory.
    pub fn trigger_dir(&self) -> PathBuf {
        self.root.join("framebus").join(&self.name)
    }

    /// A `framebus` command with this test's trigger root.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(EXE);
        c.args(args)
            .env("FRAMEBUS_RUNTIME_DIR", &self.root)
            .env("RUST_LOG", "info");
        c
    }

    /// Runs a command to completion (bounded) and returns (status, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (ExitStatus, String, String) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn framebus");
        let out = drain(child.stdout.take().expect("stdout"));
        let err = drain(child.stderr.take().expect("stderr"));
        let status =
            wait_timeout(&mut child, Duration::from_secs(30)).expect("framebus run timed out");
        (
            status,
            out.join().expect("stdout"),
            err.join().expect("stderr"),
        )
    }

    /// Starts a process whose stdout lines are captured.
    pub fn spawn(&mut self, args: &[&str]) -> Proc {
        let cmd = self.command(args);
        self.spawn_command(cmd)
    }

    /// Starts a producer and waits for its `ready bus=NAME` line.
    pub fn producer(&mut self, extra: &[&str]) -> Proc {
        let mut args = vec!["produce", "--bus"];
        let name = self.name.clone();
        args.push(&name);
        args.extend_from_slice(extra);
        let mut p = self.spawn(&args);
        p.expect_line(&format!("ready bus={}", self.name), Duration::from_secs(20));
        p
    }

    /// Starts a consumer and waits for its `attached` line.
    pub fn consumer(&mut self, extra: &[&str]) -> Proc {
        let mut args = vec!["consume", "--bus"];
        let name = self.name.clone();
        args.push(&name);
        args.extend_from_slice(extra);
        let mut p = self.spawn(&args);
        p.expect_line("attached bus=", Duration::from_secs(20));
        p
    }

    /// `framebus inspect --json` of this bus.
    pub fn inspect(&self) -> Value {
        let (status, out, err) = self.run(&["inspect", "--bus", &self.name, "--json"]);
        assert!(status.success(), "inspect failed: {err}");
        serde_json::from_str(&out).expect("inspect JSON")
    }

    /// Polls `inspect` until `cond` holds; panics after `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.inspect();
            if cond(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last inspect: {v:#}"
            );
            std::thread::yield_now();
        }
    }

    /// Waits for a spawned process to exit.
    pub fn wait(&mut self, p: &Proc, timeout: Duration) -> ExitStatus {
        let child = self
            .children
            .iter_mut()
            .find(|c| c.id() == p.pid)
            .expect("known child");
        wait_timeout(child, timeout)
            .unwrap_or_else(|| panic!("process {} did not exit within {timeout:?}", p.pid))
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.shm_path());
        let _ = std::fs::remove_file(format!("/dev/shm/.framebus-lock.{}", self.name));
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A spawned process: its pid and its stdout lines.
pub struct Proc {
    pub pid: u32,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    /// Waits for a stdout line starting with `prefix`.
    pub fn expect_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return l;
                    }
                }
                Err(e) => {
                    let err = self
                        .stderr
                        .take()
                        .map(|h| h.join().unwrap_or_default())
                        .unwrap_or_default();
                    panic!("no line starting with {prefix:?} from pid {} ({e:?}); stdout so far {:?}; stderr: {err}", self.pid, self.seen)
                }
            }
        }
    }

    /// Reads stdout to its end (bounded) and parses the last line as JSON.
    pub fn last_json(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("pid {} did not finish within {timeout:?}", self.pid)
                }
            }
        }
        let last = self.seen.last().cloned().unwrap_or_default();
        match serde_json::from_str(&last) {
            Ok(v) => v,
            Err(e) => {
                let err = self.stderr();
                panic!(
                    "last line of pid {} is not JSON ({e}): {:?}; stderr: {err}",
                    self.pid, self.seen
                )
            }
        }
    }

    /// Whether stdout has closed (the process is ending), reading what is
    /// there without waiting: `Some(())` once closed.
    pub fn try_finished(&mut self) -> Option<()> {
        loop {
            match self.lines.try_recv() {
                Ok(l) => self.seen.push(l),
                Err(mpsc::TryRecvError::Empty) => return None,
                Err(mpsc::TryRecvError::Disconnected) => return Some(()),
            }
        }
    }

    /// Everything the process wrote to stderr (after it exited).
    pub fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid as i32).expect("pid");
        rustix::process::kill_process(pid, sig).expect("kill");
    }
}

fn line_channel(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Waits for a child with a timeout (polling its status; no signal games).
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Why simulated containers cannot run here (`None` if they can): they
/// need root and `unshare` with pid and mount namespaces.
pub fn containers_unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root".into());
    }
    match Command::new("unshare")
        .args(["--pid", "--fork", "--mount", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("unshare --pid --fork --mount failed ({s})")),
        Err(e) => Some(format!("no unshare ({e})")),
    }
}

/// Prints why a test is skipped, where the test runner shows it.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

/// The host pid of the first child of process `pid` (e.g. the pid-1
/// process that `unshare --fork` started), waiting for it to exist.
pub fn first_child(pid: u32, timeout: Duration) -> u32 {
    let deadline = Instant::now() + timeout;
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = children.split_whitespace().next() {
            return c.parse().expect("a pid");
        }
        assert!(Instant::now() < deadline, "process {pid} started no child");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads a JSON number as u64.
pub fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

/// Reads a JSON number as f64.
pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}
