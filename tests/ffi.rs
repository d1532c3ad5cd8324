//! The C ABI from C and C++: `crates/ffi/install.sh` installs libframebus
//! into a private prefix, the system compiler (`cc`, `c++`) builds the
//! examples of `examples/c/` against the installed header and library
//! (found with pkg-config), and the programs run as real processes beside
//! the Rust `framebus` binary on real shared memory.
//!
//! A test that cannot run here (no compiler, no pkg-config, no OpenCV, no
//! cmake, no sanitizer runtime) says so on stderr ("SKIPPED: ...", printed
//! past the test harness's capture) instead of passing silently.
//!
//! The build lives in `$CARGO_TARGET_TMPDIR/ffi` (inside the target
//! directory), rebuilt by every run. Buses, shm objects and trigger
//! directories are per test and removed by `common::Bus` even when a test
//! fails; spawned programs are killed by [`Prog`]'s drop.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{u, Bus};
use serde_json::Value;

/// Generous bound on any one wait (never a performance assertion).
const WAIT: Duration = Duration::from_secs(60);

/// Prints past the test harness's output capture, so a skip is visible.
fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: ffi::{test}: {why}");
}

/// Whether `program --version` runs.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command to completion; panics with its output if it fails.
fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The installed library and the compiled examples.
struct Build {
    prefix: PathBuf,
    bin: PathBuf,
    /// Whether `canny` was built (OpenCV found by pkg-config).
    canny: bool,
    /// Sanitized builds that compiled: (name, how it links).
    asan: Vec<(&'static str, &'static str)>,
}

impl Build {
    fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
}

/// Installs the library and compiles the examples once per test process;
/// `Err` = why the C toolchain tests cannot run here.
fn build() -> Result<&'static Build, String> {
    static BUILD: OnceLock<Result<Build, String>> = OnceLock::new();
    BUILD.get_or_init(do_build).as_ref().map_err(Clone::clone)
}

fn do_build() -> Result<Build, String> {
    for tool in ["cc", "c++", "pkg-config"] {
        if !have(tool) {
            return Err(format!(
                "`{tool}` is not installed (apt-get install build-essential pkg-config)"
            ));
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi");
    let _ = std::fs::remove_dir_all(&base);
    let prefix = base.join("prefix");
    let bin = base.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("cannot create {}: {e}", bin.display()))?;
    // The debug build, like the rest of `cargo test`; the README's install
    // step builds release. install.sh uses the caller's CARGO_TARGET_DIR.
    run_ok(
        Command::new("bash")
            .arg(root.join("crates/ffi/install.sh"))
            .arg(&prefix)
            .arg("--debug")
            .current_dir(root),
        "crates/ffi/install.sh",
    );
    let pc_path = prefix.join("lib/pkgconfig");
    let pkg = |args: &[&str]| -> Vec<String> {
        run_ok(
            Command::new("pkg-config")
                .args(args)
                .env("PKG_CONFIG_PATH", &pc_path),
            "pkg-config",
        )
        .split_whitespace()
        .map(String::from)
        .collect()
    };
    let cflags = pkg(&["--cflags", "framebus"]);
    let libs = pkg(&["--libs", "framebus"]);
    let rpath = format!("-Wl,-rpath,{}", prefix.join("lib").display());
    let examples = root.join("examples/c");
    let compile = |compiler: &str, std: &str, src: &str, out: &str, extra: &[String]| {
        let mut cmd = Command::new(compiler);
        cmd.arg(format!("-std={std}"))
            .args(["-Wall", "-Wextra", "-Werror", "-O2", "-g"])
            .arg(examples.join(src))
            .args(&cflags)
            .args(extra)
            .args(&libs)
            .arg(&rpath)
            .arg("-o")
            .arg(bin.join(out));
        run_ok(&mut cmd, &format!("compiling {src}"));
    };
    compile("cc", "c11", "consumer.c", "consumer", &[]);
    compile("c++", "c++17", "producer.cpp", "producer", &[]);
    compile("c++", "c++17", "hold_frame.cpp", "hold_frame", &[]);

    let opencv = Command::new("pkg-config")
        .args(["--exists", "opencv4"])
        .status()
        .is_ok_and(|s| s.success());
    if opencv {
        let cv = pkg(&["--cflags", "--libs", "opencv4"]);
        compile("c++", "c++17", "canny.cpp", "canny", &cv);
    }

    // ASan + UBSan. Two ways to link, both tried: against the shared
    // libframebus (the sanitizer runtime is linked into the executable, so
    // it is loaded first and intercepts the Rust library's malloc/free too),
    // and against the static libframebus.a plus the libraries Rust's std
    // needs (pkg-config --static).
    let mut asan = Vec::new();
    let static_libs: Vec<String> = pkg(&["--static", "--libs-only-l", "framebus"])
        .into_iter()
        .filter(|l| l != "-lframebus")
        .collect();
    let sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"];
    let variants: [(&str, &str, Vec<String>); 2] = [
        ("consumer-asan", "shared", {
            let mut v = libs.clone();
            v.push(rpath.clone());
            v
        }),
        ("consumer-asan-static", "static", {
            let mut v = vec![prefix.join("lib/libframebus.a").display().to_string()];
            v.extend(static_libs.iter().cloned());
            v
        }),
    ];
    for (name, how, link) in variants {
        let out = Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
            .args(sanitize)
            .arg(examples.join("consumer.c"))
            .args(&cflags)
            .args(&link)
            .arg("-o")
            .arg(bin.join(name))
            .output()
            .map_err(|e| format!("cannot run cc: {e}"))?;
        if out.status.success() {
            asan.push((name, how));
        } else {
            let _ = writeln!(
                std::io::stderr(),
                "note: the {how} ASan build did not compile (no sanitizer runtime?): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(Build {
        prefix,
        bin,
        canny: opencv,
        asan,
    })
}

/// The build, or a printed skip.
macro_rules! build_or_skip {
    ($test:expr) => {
        match build() {
            Ok(b) => b,
            Err(why) => {
                skip($test, &why);
                return;
            }
        }
    };
}

/// A spawned C or C++ program: stdout lines on a channel, stderr collected,
/// killed on drop.
struct Prog {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    stdin: Option<ChildStdin>,
}

impl Prog {
    fn spawn(program: &Path, args: &[&str], bus: &Bus) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .env("FRAMEBUS_RUNTIME_DIR", &bus.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
            stdin,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line starting with `prefix`.
    fn expect_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
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
                    let _ = self.child.kill();
                    let err = self.stderr();
                    panic!(
                        "no line starting with {prefix:?} from pid {} ({e:?}); stdout so far {:?}; stderr: {err}",
                        self.pid(),
                        self.seen
                    )
                }
            }
        }
    }

    /// Sends a line to the program's stdin.
    fn send_line(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"\n").expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Waits for the exit; returns the status and all remaining stdout.
    fn finish(&mut self) -> (ExitStatus, Vec<String>) {
        let status = common::wait_timeout(&mut self.child, WAIT)
            .unwrap_or_else(|| panic!("pid {} did not exit within {WAIT:?}", self.child.id()));
        while let Ok(l) = self.lines.recv_timeout(WAIT) {
            self.seen.push(l);
        }
        (status, self.seen.clone())
    }

    /// Everything the program wrote to stderr (after it exited).
    fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// The last stdout line as JSON (after `finish`).
    fn last_json(&mut self) -> Value {
        let last = self.seen.last().cloned().unwrap_or_default();
        match serde_json::from_str(&last) {
            Ok(v) => v,
            Err(e) => {
                let err = self.stderr();
                panic!(
                    "last line of pid {} is not JSON ({e}): {:?}; stderr: {err}",
                    self.pid(),
                    self.seen
                )
            }
        }
    }
}

impl Drop for Prog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The entry number in an "attached ... entry=E ..." line.
fn entry_of(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("entry="))
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no entry= in {line:?}"))
}

/// The consumer of `pid` in an inspect snapshot.
fn consumer_of(v: &Value, pid: u32) -> Option<&Value> {
    v["consumers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| u(&c["pid"]) == u64::from(pid)))
}

/// Whether any slot has bit `entry` set in its pin word.
fn bit_pinned(v: &Value, entry: u64) -> bool {
    v["slots"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| u(&s["pins"]) & (1 << entry) != 0))
}

/// Runs a C consumer to completion and checks it saw good frames only.
fn check_c_consumer(mut c: Prog, frames: u64, what: &str) -> Value {
    let (status, _) = c.finish();
    let stderr = c.stderr();
    assert!(
        status.success(),
        "{what} failed ({status}); stderr: {stderr}"
    );
    let v = c.last_json();
    assert_eq!(u(&v["frames"]), frames, "{what}: {v}");
    assert_eq!(u(&v["bad_frames"]), 0, "{what}: {v}; stderr: {stderr}");
    assert!(v["skipped"].is_u64(), "{what}: no skipped count: {v}");
    v
}

#[test]
fn c_consumer_verifies_every_frame_beside_a_rust_consumer() {
    let b = build_or_skip!("c_consumer_verifies_every_frame_beside_a_rust_consumer");
    let mut bus = Bus::new("ffi-c");
    let _producer = bus.producer(&["--fps", "200", "--size", "100x40"]);
    let mut c = Prog::spawn(
        &b.program("consumer"),
        &[
            "--bus", &bus.name, "--frames", "150", "--verify", "--quiet", "--json",
        ],
        &bus,
    );
    c.expect_line("attached bus=");
    let mut rust = bus.consumer(&["--algo", "verify", "--frames", "150", "--json"]);
    check_c_consumer(c, 150, "C consumer");
    let r = rust.last_json(WAIT);
    assert_eq!(u(&r["frames"]), 150, "{r}");
    assert_eq!(u(&r["bad_frames"]), 0, "{r}");
}

#[test]
fn cpp_producer_feeds_rust_and_c_consumers_in_place_and_by_copy() {
    let b = build_or_skip!("cpp_producer_feeds_rust_and_c_consumers_in_place_and_by_copy");
    for mode in [None, Some("--copy")] {
        let mut bus = Bus::new("ffi-cpp-prod");
        let mut args = vec!["--bus", &bus.name, "--fps", "300", "--size", "100x40"];
        args.extend(mode);
        let mut producer = Prog::spawn(&b.program("producer"), &args, &bus);
        producer.expect_line(&format!("ready bus={}", bus.name));
        let mut rust = bus.consumer(&["--algo", "verify", "--frames", "120", "--json"]);
        let mut c = Prog::spawn(
            &b.program("consumer"),
            &[
                "--bus", &bus.name, "--frames", "120", "--verify", "--quiet", "--json",
            ],
            &bus,
        );
        c.expect_line("attached bus=");
        check_c_consumer(c, 120, "C consumer of the C++ producer");
        let r = rust.last_json(WAIT);
        assert_eq!(u(&r["bad_frames"]), 0, "{mode:?}: {r}");
        assert_eq!(u(&r["frames"]), 120, "{mode:?}: {r}");
        // A clean stop removes the bus.
        let pid = rustix::process::Pid::from_raw(producer.pid() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let (status, lines) = producer.finish();
        assert!(status.success(), "C++ producer {status}: {lines:?}");
        assert!(
            lines.iter().any(|l| l.starts_with("published ")),
            "{lines:?}"
        );
        assert!(!bus.shm_path().exists(), "the C++ producer left its bus");
    }
}

/// The C++ producer of a gray16 (12 significant bits), bgr8 and rgb8 bus,
/// in place and by copy: the Rust and the C consumer check every frame in
/// the bus's format, and the bus header says the format and bits.
#[test]
fn cpp_producer_in_every_format_is_verified_by_rust_and_c_consumers() {
    let b = build_or_skip!("cpp_producer_in_every_format_is_verified_by_rust_and_c_consumers");
    for (format, bits, mode, code, seen_bits) in [
        ("gray16", "12", None, 2, 12),
        ("bgr8", "0", Some("--copy"), 3, 8),
        ("rgb8", "8", None, 4, 8),
        ("gray16", "0", Some("--copy"), 2, 16),
    ] {
        let mut bus = Bus::new("ffi-cpp-fmt");
        let mut args = vec![
            "--bus", &bus.name, "--fps", "200", "--size", "61x23", "--format", format, "--bits",
            bits,
        ];
        args.extend(mode);
        let mut producer = Prog::spawn(&b.program("producer"), &args, &bus);
        producer.expect_line(&format!("ready bus={} size=61x23 stride=", bus.name));
        let mut rust = bus.consumer(&["--algo", "verify", "--frames", "60", "--json"]);
        let mut c = Prog::spawn(
            &b.program("consumer"),
            &[
                "--bus", &bus.name, "--frames", "60", "--verify", "--quiet", "--json",
            ],
            &bus,
        );
        c.expect_line("attached bus=");
        check_c_consumer(c, 60, &format!("C consumer of a {format} bus"));
        let r = rust.last_json(WAIT);
        assert_eq!(u(&r["bad_frames"]), 0, "{format} {mode:?}: {r}");
        assert_eq!(u(&r["frames"]), 60, "{format} {mode:?}: {r}");
        let v = bus.inspect();
        assert_eq!(v["geometry"]["pixel_format"], format, "{v}");
        assert_eq!(u(&v["geometry"]["significant_bits"]), seen_bits, "{v}");
        let pid = rustix::process::Pid::from_raw(producer.pid() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let (status, lines) = producer.finish();
        assert!(status.success(), "C++ producer {status}: {lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!(" format={code} bits={seen_bits}"))),
            "{lines:?}"
        );
        assert!(!bus.shm_path().exists(), "the C++ producer left its bus");
    }
}

#[test]
fn sigkilled_c_consumer_holding_a_pin_is_reclaimed() {
    let b = build_or_skip!("sigkilled_c_consumer_holding_a_pin_is_reclaimed");
    let mut bus = Bus::new("ffi-kill");
    let _producer = bus.producer(&["--fps", "100", "--size", "100x40"]);
    let mut c = Prog::spawn(
        &b.program("consumer"),
        &["--bus", &bus.name, "--hold", "--quiet"],
        &bus,
    );
    let entry = entry_of(&c.expect_line("attached bus="));
    c.expect_line("holding seq=");
    let pid = c.pid();
    let held = bus.inspect();
    let me = consumer_of(&held, pid).unwrap_or_else(|| panic!("no entry of pid {pid}: {held:#}"));
    assert!(
        !me["pinned_slots"].as_array().expect("array").is_empty(),
        "{me}"
    );
    assert!(bit_pinned(&held, entry), "{held:#}");

    c.child.kill().expect("SIGKILL");
    c.child.wait().expect("reap");
    bus.wait_for(
        "the killed C consumer's entry and pin to be reclaimed",
        WAIT,
        |v| consumer_of(v, pid).is_none() && !bit_pinned(v, entry),
    );
}

#[test]
fn cpp_frame_destructor_releases_its_pin() {
    let b = build_or_skip!("cpp_frame_destructor_releases_its_pin");
    let mut bus = Bus::new("ffi-raii");
    // A budget of one frame (the default is two), so the second is refused.
    let _producer = bus.producer(&[
        "--fps",
        "100",
        "--size",
        "100x40",
        "--pins-per-consumer",
        "1",
    ]);
    let mut h = Prog::spawn(&b.program("hold_frame"), &[&bus.name], &bus);
    let entry = entry_of(&h.expect_line("attached entry="));
    h.expect_line("holding seq=");
    // A second frame is refused by the budget, as an exception with a code.
    let second = h.expect_line("second frame:");
    assert!(
        second.contains("FRAMEBUS_ERROR_PIN_BUDGET") && second.contains("budget"),
        "{second}"
    );
    let pid = h.pid();
    let v = bus.inspect();
    let me = consumer_of(&v, pid).unwrap_or_else(|| panic!("no entry of pid {pid}: {v:#}"));
    assert_eq!(
        me["pinned_slots"].as_array().expect("array").len(),
        1,
        "{me}"
    );

    h.send_line();
    h.expect_line("released");
    // The process is alive and registered: only the destructor can have
    // cleared the bit (a reclaim would also free the entry).
    let v = bus.inspect();
    let me = consumer_of(&v, pid).unwrap_or_else(|| panic!("entry of pid {pid} gone: {v:#}"));
    assert!(
        me["pinned_slots"].as_array().expect("array").is_empty(),
        "{me}"
    );
    assert!(!bit_pinned(&v, entry), "{v:#}");
    h.send_line();
    let (status, lines) = h.finish();
    assert!(status.success(), "{status}: {lines:?}");
}

#[test]
fn errors_come_back_as_codes_with_messages() {
    let b = build_or_skip!("errors_come_back_as_codes_with_messages");
    let mut bus = Bus::new("ffi-err");

    // No bus at all: C and C++.
    let mut c = Prog::spawn(&b.program("consumer"), &["--bus", &bus.name], &bus);
    let (status, _) = c.finish();
    let err = c.stderr();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(
        err.contains("FRAMEBUS_ERROR_BUS_NOT_FOUND (code 4)") && err.contains("does not exist"),
        "{err}"
    );
    let mut h = Prog::spawn(&b.program("hold_frame"), &[&bus.name], &bus);
    let line = h.expect_line("error ");
    assert!(
        line.starts_with("error code=4 name=FRAMEBUS_ERROR_BUS_NOT_FOUND message=no bus named"),
        "{line}"
    );
    assert_eq!(h.finish().0.code(), Some(3));

    // A bad bus name is an invalid argument.
    let mut c = Prog::spawn(&b.program("consumer"), &["--bus", "../evil"], &bus);
    let (status, _) = c.finish();
    let err = c.stderr();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(
        err.contains("FRAMEBUS_ERROR_INVALID_ARGUMENT (code 3)"),
        "{err}"
    );

    // A bus written by another layout version: a forged header page
    // (magic, then version 1, the pid-era layout) in /dev/shm, removed by the Bus guard.
    let mut page = vec![0u8; 4096];
    page[0..8].copy_from_slice(b"FRAMEBUS");
    page[8..12].copy_from_slice(&1u32.to_le_bytes());
    page[12..16].copy_from_slice(&256u32.to_le_bytes());
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(bus.shm_path())
            .expect("create the forged object");
        f.write_all(&page).expect("write the forged header");
    }
    let mut c = Prog::spawn(&b.program("consumer"), &["--bus", &bus.name], &bus);
    let (status, _) = c.finish();
    let err = c.stderr();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(
        err.contains("FRAMEBUS_ERROR_LAYOUT_VERSION (code 7)") && err.contains("layout version 1"),
        "{err}"
    );
    std::fs::remove_file(bus.shm_path()).expect("remove the forged object");

    // A bus a live producer owns: the C++ producer gets BUS_BUSY.
    let _producer = bus.producer(&["--fps", "50", "--size", "100x40"]);
    let mut p = Prog::spawn(&b.program("producer"), &["--bus", &bus.name], &bus);
    let (status, _) = p.finish();
    let err = p.stderr();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(
        err.contains("FRAMEBUS_ERROR_BUS_BUSY")
            && err.contains("(code 11)")
            && err.contains("already produced by process"),
        "{err}"
    );
}

#[test]
fn c_consumer_under_asan_and_ubsan() {
    let b = build_or_skip!("c_consumer_under_asan_and_ubsan");
    if b.asan.is_empty() {
        skip(
            "c_consumer_under_asan_and_ubsan",
            "no ASan/UBSan build compiled (gcc's libasan/libubsan missing?)",
        );
        return;
    }
    let mut bus = Bus::new("ffi-asan");
    let _producer = bus.producer(&["--fps", "200", "--size", "100x40"]);
    for (name, how) in &b.asan {
        let mut cmd = Command::new(b.program(name));
        // Leak checking stays on (the default): it passes with both links.
        // UBSan: any report fails the run.
        cmd.args([
            "--bus", &bus.name, "--frames", "100", "--verify", "--quiet", "--json",
        ])
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=99",
        )
        .env(
            "UBSAN_OPTIONS",
            "halt_on_error=1:print_stacktrace=1:exitcode=98",
        );
        let out = cmd.output().expect("run the ASan consumer");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{how}-linked ASan/UBSan C consumer failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        assert!(
            !stderr.contains("Sanitizer") && !stderr.contains("runtime error"),
            "{stderr}"
        );
        let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(u(&v["bad_frames"]), 0, "{v}");
        assert_eq!(u(&v["frames"]), 100, "{v}");
    }
}

#[test]
fn opencv_canny_on_zero_copy_mats() {
    let b = build_or_skip!("opencv_canny_on_zero_copy_mats");
    if !b.canny {
        skip(
            "opencv_canny_on_zero_copy_mats",
            "OpenCV not found by pkg-config (apt-get install libopencv-dev)",
        );
        return;
    }
    // gray8 and bgr8 go to Canny as they are, gray16 scaled to 8 bits.
    for producer_args in [
        &["--format", "gray8"][..],
        &["--format", "bgr8"][..],
        &["--format", "gray16", "--bits", "12"][..],
    ] {
        let mut bus = Bus::new("ffi-canny");
        let mut args = vec!["--fps", "100", "--size", "320x240"];
        args.extend_from_slice(producer_args);
        let _producer = bus.producer(&args);
        let mut c = Prog::spawn(
            &b.program("canny"),
            &["--bus", &bus.name, "--frames", "30"],
            &bus,
        );
        c.expect_line("attached bus=");
        let (status, lines) = c.finish();
        assert!(
            status.success(),
            "{producer_args:?}: {status}: {lines:?} {}",
            c.stderr()
        );
        let v = c.last_json();
        assert_eq!(u(&v["frames"]), 30, "{producer_args:?}: {v}");
        assert_eq!(u(&v["not_zero_copy"]), 0, "{producer_args:?}: {v}");
        // The test pattern has edges everywhere: Canny found some.
        assert!(
            lines
                .iter()
                .filter(|l| l.starts_with("frame "))
                .all(|l| !l.contains(" edges=0 ")),
            "{producer_args:?}: {lines:?}"
        );
    }
}

#[test]
fn cmake_find_package_builds_the_examples() {
    let b = build_or_skip!("cmake_find_package_builds_the_examples");
    if !have("cmake") {
        skip(
            "cmake_find_package_builds_the_examples",
            "cmake is not installed (apt-get install cmake)",
        );
        return;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/c");
    let dir = b.bin.join("cmake-build");
    run_ok(
        Command::new("cmake")
            .arg("-S")
            .arg(&src)
            .arg("-B")
            .arg(&dir)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", b.prefix.display())),
        "cmake configure",
    );
    run_ok(
        Command::new("cmake").arg("--build").arg(&dir),
        "cmake build",
    );
    // The CMake-built consumer runs (and finds libframebus by its rpath).
    let mut bus = Bus::new("ffi-cmake");
    let _producer = bus.producer(&["--fps", "100", "--size", "100x40"]);
    let c = Prog::spawn(
        &dir.join("consumer"),
        &[
            "--bus", &bus.name, "--frames", "20", "--verify", "--quiet", "--json",
        ],
        &bus,
    );
    check_c_consumer(c, 20, "CMake-built C consumer");
}

/// Not a performance assertion: prints publish-to-pin latency of the C
/// consumer (through the C ABI) and the Rust consumer attached to one
/// 1000 fps bus at once. Release-build figures: see doc/C_API.md.
#[test]
fn c_and_rust_consumer_latency_side_by_side() {
    let b = build_or_skip!("c_and_rust_consumer_latency_side_by_side");
    let mut bus = Bus::new("ffi-lat");
    let _producer = bus.producer(&["--fps", "1000", "--size", "640x480"]);
    let mut c = Prog::spawn(
        &b.program("consumer"),
        &[
            "--bus", &bus.name, "--frames", "2000", "--skip", "200", "--quiet", "--json",
        ],
        &bus,
    );
    c.expect_line("attached bus=");
    let mut rust = bus.consumer(&[
        "--algo", "busy:0", "--frames", "2000", "--warmup", "0.2", "--json",
    ]);
    let cv = check_c_consumer(c, 2000, "C consumer at 1000 fps");
    let r = rust.last_json(WAIT);
    let _ = writeln!(
        std::io::stderr(),
        "latency (debug build) publish->pinned p50/p99 us: C library {}/{}, C wake {}/{}, Rust {}/{}",
        cv["latency_us"]["p50"],
        cv["latency_us"]["p99"],
        cv["wake_latency_us"]["p50"],
        cv["wake_latency_us"]["p99"],
        r["latency_us"]["p50"],
        r["latency_us"]["p99"]
    );
}
