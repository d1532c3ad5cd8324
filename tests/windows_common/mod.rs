//! What the Windows tests (`windows.rs`, `windows_ffi.rs`) share: child
//! processes read line by line with bounded waits and killed on drop, and
//! `framebus inspect` polled until a condition holds.
#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader};
use std::os::windows::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The Windows `framebus` CLI under test.
pub const EXE: &str = env!("CARGO_BIN_EXE_framebus");

/// Starts `framebus` with `args` (see [`spawn_program`]).
pub fn spawn(args: &[&str]) -> Proc {
    spawn_program(Path::new(EXE), args)
}

/// A child killed and reaped on drop, so a failing test leaves nothing.
pub struct Proc {
    pub what: String,
    pub child: Child,
    pub lines: Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn_program(program: &Path, args: &[&str]) -> Proc {
    let what = format!(
        "{} {}",
        program.file_name().unwrap_or_default().to_string_lossy(),
        args.join(" ")
    );
    // Its own process group, so a Ctrl-Break can be sent to it alone.
    const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
    let mut child = Command::new(program)
        .args(args)
        .creation_flags(CREATE_NEW_PROCESS_GROUP)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let out = child.stdout.take().expect("stdout");
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Proc { what, child, lines }
}

impl Proc {
    /// The first stdout line starting with `prefix`, waited for up to
    /// `timeout`.
    pub fn line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => panic!(
                    "{}: no line starting with {prefix:?} within {timeout:?} ({e})",
                    self.what
                ),
            }
        }
    }

    /// The last JSON object the process prints before it exits; the exit
    /// status must be 0 (the C consumer exits 2 on a bad frame, 3 on a
    /// framebus error, 4 on a timeout).
    pub fn summary(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with('{') => last = serde_json::from_str(&l).ok(),
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("{}: did not finish within {timeout:?} ({e})", self.what),
            }
        }
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "{}: exit status {status}", self.what);
        last.unwrap_or_else(|| panic!("{}: no JSON summary", self.what))
    }

    /// `TerminateProcess`, then wait for the process to be gone.
    pub fn kill(&mut self) {
        self.child.kill().expect("TerminateProcess");
        self.child.wait().expect("wait");
    }
}

/// `framebus inspect --bus BUS --json`, or `None` if it fails.
pub fn inspect(bus: &str) -> Option<Value> {
    let out = Command::new(EXE)
        .args(["inspect", "--bus", bus, "--json"])
        .env("RUST_LOG", "error")
        .output()
        .expect("run inspect");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Polls `inspect` until `pred` holds (or panics after `timeout`).
pub fn wait_for(bus: &str, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = inspect(bus) {
            if pred(&v) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Consumer `name`'s row in an `inspect --json` value.
pub fn consumer<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["consumers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}
