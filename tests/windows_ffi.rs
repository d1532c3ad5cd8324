//! The C ABI on Windows, with real processes: the C example consumer
//! (`examples/c/consumer.c`) and the C++ example producer
//! (`examples/c/producer.cpp`), cross-compiled with mingw-w64 against
//! `framebus.dll` and the committed header, beside the Windows `framebus`
//! CLI. A C consumer verifies every byte of the Rust producer's frames, a
//! C consumer killed (`TerminateProcess`) while it holds a frame is
//! reclaimed by the Rust producer, and the C consumer (linked with the DLL
//! and, once more, with the static library) and the Rust consumer verify
//! the C++ producer's frames.
//!
//! The C programs are built by `.ci/windows-ffi.sh`, which puts them and
//! `framebus.dll` in one directory and names it in `FRAMEBUS_WIN_C_DIR`
//! (this test runs under wine, where no compiler is at hand). Without that
//! variable every test says "SKIPPED (...)" on stderr and passes.
//!
//! Built for `x86_64-pc-windows-gnu` and run under wine in CI; on other
//! targets this file is empty (`tests/ffi.rs` is the Linux counterpart).
#![cfg(windows)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_framebus");

/// Generous bound on any one wait (under wine every call is slow; never a
/// performance assertion).
const WAIT: Duration = Duration::from_secs(60);

/// The directory holding `consumer.exe` (linked with `framebus.dll`),
/// `consumer-static.exe` (with `libframebus.a`), `producer.exe` and
/// `framebus.dll`, or `None` after printing why the test is skipped.
fn c_dir(test: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("FRAMEBUS_WIN_C_DIR") else {
        eprintln!(
            "{test}: SKIPPED (FRAMEBUS_WIN_C_DIR is not set; .ci/windows-ffi.sh builds the C programs and sets it)"
        );
        return None;
    };
    let dir = PathBuf::from(dir);
    for f in [
        "consumer.exe",
        "consumer-static.exe",
        "producer.exe",
        "framebus.dll",
    ] {
        assert!(
            dir.join(f).is_file(),
            "FRAMEBUS_WIN_C_DIR={} has no {f}",
            dir.display()
        );
    }
    Some(dir)
}

/// A child killed and reaped on drop, so a failing test leaves nothing.
struct Proc {
    what: String,
    child: Child,
    lines: Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(program: &PathBuf, args: &[&str]) -> Proc {
    let what = format!(
        "{} {}",
        program.file_name().unwrap_or_default().to_string_lossy(),
        args.join(" ")
    );
    let mut child = Command::new(program)
        .args(args)
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
    fn line(&self, prefix: &str, timeout: Duration) -> String {
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
    fn summary(&mut self, timeout: Duration) -> Value {
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
    fn kill(&mut self) {
        self.child.kill().expect("TerminateProcess");
        self.child.wait().expect("wait");
    }
}

fn inspect(bus: &str) -> Option<Value> {
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
fn wait_for(bus: &str, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
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

fn consumer<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["consumers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn pins(v: &Value) -> u64 {
    v["slots"].as_array().map_or(u64::MAX, |s| {
        s.iter().map(|x| x["pins"].as_u64().unwrap_or(0)).sum()
    })
}

/// Checks a verifying consumer's summary: `frames` taken, none bad.
fn assert_verified(who: &str, s: &Value, frames: u64) {
    eprintln!("{who}: {s}");
    assert_eq!(s["frames"].as_u64(), Some(frames), "{who}: {s}");
    assert_eq!(s["bad_frames"].as_u64(), Some(0), "{who}: {s}");
}

#[test]
fn c_consumer_verifies_the_rust_producer_and_a_killed_one_is_reclaimed() {
    let Some(dir) = c_dir("c_consumer_verifies_the_rust_producer_and_a_killed_one_is_reclaimed")
    else {
        return;
    };
    let c_consumer = dir.join("consumer.exe");
    let bus = format!("winffi-rust-{}", std::process::id());
    let mut producer = spawn(
        &PathBuf::from(EXE),
        &[
            "produce",
            "--bus",
            &bus,
            "--size",
            "320x240",
            "--fps",
            "60",
            "--max-consumers",
            "4",
        ],
    );
    producer.line("ready", WAIT);

    // A C consumer that verifies every byte of 120 frames...
    let mut verifier = spawn(
        &c_consumer,
        &[
            "--bus",
            &bus,
            "--frames",
            "120",
            "--verify",
            "--quiet",
            "--json",
            "--timeout-ms",
            "30000",
            "--name",
            "c-verify",
        ],
    );
    verifier.line("attached", WAIT);
    // ...and one that pins a frame and holds it until it is killed.
    let mut holder = spawn(
        &c_consumer,
        &[
            "--bus",
            &bus,
            "--hold",
            "--timeout-ms",
            "30000",
            "--name",
            "c-holder",
        ],
    );
    holder.line("attached", WAIT);
    holder.line("holding", WAIT);
    wait_for(&bus, "the C holder's pin", WAIT, |v| {
        consumer(v, "c-holder")
            .is_some_and(|c| c["pinned_slots"].as_array().is_some_and(|p| !p.is_empty()))
    });
    holder.kill();
    // The Rust producer reclaims the killed C consumer's entry and pin.
    wait_for(&bus, "the killed C holder reclaimed", WAIT, |v| {
        consumer(v, "c-holder").is_none() && pins(v) <= 1
    });

    let s = verifier.summary(WAIT);
    assert_verified("C consumer of the Rust producer", &s, 120);
    assert_eq!(s["reattached"].as_u64(), Some(0), "{s}");

    // Nothing left once the producer has ended.
    producer.kill();
    drop(producer);
    assert!(inspect(&bus).is_none(), "no bus object is left");
}

#[test]
fn c_and_rust_consumers_verify_the_cpp_producer() {
    let Some(dir) = c_dir("c_and_rust_consumers_verify_the_cpp_producer") else {
        return;
    };
    let bus = format!("winffi-cpp-{}", std::process::id());
    let mut producer = spawn(
        &dir.join("producer.exe"),
        &["--bus", &bus, "--size", "320x240", "--fps", "60"],
    );
    let ready = producer.line("ready", WAIT);
    assert!(ready.contains("size=320x240"), "{ready}");

    let c_args = [
        "--bus",
        &bus,
        "--frames",
        "120",
        "--verify",
        "--quiet",
        "--json",
        "--timeout-ms",
        "30000",
    ];
    let mut c = spawn(&dir.join("consumer.exe"), &c_args);
    let mut c_static = spawn(&dir.join("consumer-static.exe"), &c_args);
    let mut rust = spawn(
        &PathBuf::from(EXE),
        &[
            "consume", "--bus", &bus, "--algo", "verify", "--frames", "120", "--json",
        ],
    );
    c.line("attached", WAIT);
    c_static.line("attached", WAIT);
    rust.line("attached", WAIT);
    assert_verified("C consumer of the C++ producer", &c.summary(WAIT), 120);
    assert_verified(
        "statically linked C consumer of the C++ producer",
        &c_static.summary(WAIT),
        120,
    );
    assert_verified(
        "Rust consumer of the C++ producer",
        &rust.summary(WAIT),
        120,
    );

    producer.kill();
    drop(producer);
    assert!(inspect(&bus).is_none(), "no bus object is left");
}
