//! The CLI's conventions (README, "Conventions"), one test each: zero means
//! no limit, "no limit" reads `unlimited` in tables and `0` in JSON, the
//! summary on stdout and logs on stderr, a closed stdout ends a command
//! quietly, no colours in logs that are not at a terminal, PNG only (and
//! `-o -`), a full bus still snapshots, errors that say what to do,
//! `--version` names the features, and rates count intervals.

mod common;

use std::io::Read;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use common::{f, u, wait_timeout, Bus};
use shm_layout::pattern::Pattern;

const T: Duration = Duration::from_secs(30);

/// Runs `args` with a stdout whose reader has already gone (every write
/// fails with EPIPE, as under `| head -0`); returns the status and stderr.
fn run_with_closed_stdout(bus: &Bus, args: &[&str]) -> (ExitStatus, String) {
    let (reader, writer) = rustix::pipe::pipe().expect("pipe");
    drop(reader);
    let mut child = bus
        .command(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn framebus");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    let status = wait_timeout(&mut child, T).expect("framebus did not exit");
    (status, err)
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let mut bus = Bus::new("epipe");
    bus.producer(&["--size", "64x48"]);
    let name = bus.name.clone();
    for args in [
        vec!["inspect", "--bus", &name],
        vec!["inspect", "--bus", &name, "--json"],
        vec!["list", "--sample", "0"],
        vec!["clean", "--bus", &name],
        vec!["snapshot", "--bus", &name, "-o", "-"],
        vec!["consume", "--bus", &name, "--frames", "2"],
        vec!["--version"],
    ] {
        let (status, err) = run_with_closed_stdout(&bus, &args);
        assert_eq!(
            status.code(),
            Some(0),
            "{args:?}: {status:?}, stderr: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn zero_means_no_limit_everywhere() {
    let mut bus = Bus::new("zero");
    bus.producer(&["--size", "64x48", "--fps", "200"]);
    let name = bus.name.clone();
    let c = bus.consumer(&["--max-fps", "0", "--name", "free"]);
    // Inspect: 0 in JSON, `unlimited` in the table.
    let v = bus.wait_for("the consumer's first frames", T, |v| {
        v["consumers"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| u(&c["frames"]) >= 3))
    });
    assert_eq!(f(&v["consumers"][0]["max_fps"]), 0.0, "{v:#}");
    let (status, table, err) = bus.run(&["inspect", "--bus", &name]);
    assert!(status.success(), "{err}");
    let row = table
        .lines()
        .find(|l| l.contains(" free "))
        .unwrap_or_else(|| panic!("no row for the consumer: {table}"));
    assert!(row.contains("unlimited"), "{row}");
    c.signal(rustix::process::Signal::TERM);
    let status = bus.wait(&c, T);
    assert!(status.success(), "consume --max-fps 0: {status:?}");
}

#[test]
fn summaries_on_stdout_logs_on_stderr_without_colours() {
    let bus = Bus::new("streams");
    let name = bus.name.clone();
    let (status, out, err) = bus.run(&[
        "produce", "--bus", &name, "--size", "64x48", "--frames", "3",
    ]);
    assert!(status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "ready line and summary on stdout: {out:?}");
    assert_eq!(lines[0], format!("ready bus={name}"));
    assert!(
        lines[1].starts_with(&format!("bus {name}: 3 frames")),
        "{out}"
    );
    assert!(!err.contains("frames in"), "summary on stderr: {err}");

    // --json: the ready line, then the JSON, nothing else.
    let (status, out, err) = bus.run(&[
        "produce", "--bus", &name, "--size", "64x48", "--frames", "3", "--json",
    ]);
    assert!(status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(lines[1]).expect("JSON summary");
    assert_eq!(u(&v["frames"]), 3, "{v}");

    // A log line (info: the producer went away) reaches stderr without ANSI
    // escapes, stderr being a pipe here (NO_COLOR: a unit test in main.rs).
    let mut bus = Bus::new("colours");
    let p = bus.producer(&["--size", "64x48"]);
    let mut c = bus.consumer(&["--frames", "1000000"]);
    p.signal(rustix::process::Signal::KILL);
    bus.wait(&p, T);
    c.signal(rustix::process::Signal::TERM);
    bus.wait(&c, T);
    let err = c.stderr();
    assert!(err.contains("INFO"), "expected an info log: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escapes in a log to a pipe: {err:?}"
    );
}

#[test]
fn snapshot_writes_png_only_and_to_stdout() {
    let mut bus = Bus::new("png");
    bus.producer(&["--size", "64x48"]);
    let name = bus.name.clone();
    let jpg = bus.root.join("frame.jpg");
    let (status, _, err) = bus.run(&[
        "snapshot",
        "--bus",
        &name,
        "-o",
        jpg.to_str().expect("utf-8"),
    ]);
    assert!(
        !status.success() && err.contains("PNG only") && err.contains("-o -"),
        "{err}"
    );
    assert!(!jpg.exists(), "a refused snapshot wrote {}", jpg.display());

    let mut child = bus
        .command(&["snapshot", "--bus", &name, "-o", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut png_bytes = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut png_bytes)
        .expect("read");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    let status = wait_timeout(&mut child, T).expect("snapshot exit");
    assert!(status.success(), "{err}");
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .expect("stdout is a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("frame");
    assert_eq!((info.width, info.height), (64, 48));
    assert!(err.starts_with("seq="), "the summary goes to stderr: {err}");
    assert!(!bus.root.join("-").exists(), "a file named - was created");
}

/// A full bus still snapshots: with its one consumer entry taken (and so
/// `consume` refused), `snapshot` copies the newest frame without an entry
/// — it says so on stderr — and the PNG is, pixel for pixel, the fake
/// camera's frame of the seq it names. The consumer keeps its entry
/// throughout.
#[test]
fn a_full_bus_still_snapshots() {
    let mut bus = Bus::new("fullsnap");
    bus.producer(&["--size", "100x40", "--fps", "100", "--max-consumers", "1"]);
    let name = bus.name.clone();
    let holder = bus.consumer(&["--name", "holder"]);
    let (status, _, err) = bus.run(&["consume", "--bus", &name, "--frames", "1"]);
    assert!(
        !status.success() && err.contains("consumer entries"),
        "a second consumer attached to a one-entry bus: {err}"
    );
    let png = bus.root.join("full.png");
    let png_arg = png.to_str().expect("utf-8");
    for _ in 0..3 {
        let (status, out, err) = bus.run(&["snapshot", "--bus", &name, "-o", png_arg, "--json"]);
        assert!(status.success(), "snapshot of a full bus failed: {err}");
        assert!(
            err.contains("without an entry"),
            "no log of the fallback: {err}"
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
        let seq = u(&v["seq"]);
        let mut reader = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(&png).expect("open the PNG"),
        ))
        .read_info()
        .expect("PNG header");
        let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut pixels).expect("PNG frame");
        assert_eq!(
            (info.width, info.height, info.color_type),
            (100, 40, png::ColorType::Grayscale)
        );
        pixels.truncate(info.buffer_size());
        Pattern::new(100)
            .verify(seq, &pixels, 100, 40)
            .unwrap_or_else(|e| panic!("frame {seq} of the full bus is not whole: {e:?}"));
    }
    // The snapshots took no entry: the holder still has the only one.
    let v = bus.inspect();
    let consumers = v["consumers"].as_array().expect("consumers");
    assert_eq!(consumers.len(), 1, "{v:#}");
    assert_eq!(consumers[0]["name"], "holder", "{v:#}");
    assert_eq!(u(&consumers[0]["pid"]), u64::from(holder.pid), "{v:#}");
    holder.signal(rustix::process::Signal::TERM);
    let status = bus.wait(&holder, T);
    assert!(status.success(), "the holder: {status:?}");
}

#[test]
fn errors_say_what_happened_and_what_to_do() {
    let mut bus = Bus::new("errors");
    let p = bus.producer(&["--size", "64x48"]);
    let name = bus.name.clone();
    let (status, _, err) = bus.run(&["produce", "--bus", &name]);
    assert!(!status.success(), "a second producer started");
    assert!(err.contains("refused") && !err.contains("stopped"), "{err}");
    assert!(
        err.contains(&p.pid.to_string()),
        "names the live producer: {err}"
    );

    // A stale bus: its producer was killed and left its object behind.
    p.signal(rustix::process::Signal::KILL);
    bus.wait(&p, T);
    let (status, _, err) = bus.run(&["consume", "--bus", &name, "--frames", "1"]);
    assert!(!status.success(), "attached to a stale bus");
    assert!(
        err.contains(&format!("framebus clean --bus {name}")),
        "{err}"
    );
}

#[test]
fn version_lists_the_compiled_features() {
    let bus = Bus::new("version");
    let (status, out, _) = bus.run(&["--version"]);
    assert!(status.success());
    let want = format!(
        "opencv={}",
        if cfg!(feature = "opencv") {
            "yes"
        } else {
            "no"
        }
    );
    assert!(out.contains(&want) && out.contains("bridge="), "{out}");
}

/// A consumer limited to 1 fps that takes 4 frames takes them at about 0,
/// 1, 2 and 3 s: 3 intervals in 3 s are 1 fps, where 4 frames in those
/// 3 s would read 1.33.
#[test]
fn rates_count_intervals_not_frames() {
    let mut bus = Bus::new("intervals");
    bus.producer(&["--size", "64x48", "--fps", "30"]);
    let name = bus.name.clone();
    // --frames, not --duration: always 4 frames, however loaded the host
    // (bus.run bounds the wait).
    let (status, out, err) = bus.run(&[
        "consume",
        "--bus",
        &name,
        "--max-fps",
        "1",
        "--frames",
        "4",
        "--json",
    ]);
    assert!(status.success(), "{err}");
    let v: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).expect("JSON");
    assert_eq!(u(&v["frames"]), 4, "{v}");
    let (fps, secs) = (f(&v["fps"]), f(&v["seconds"]));
    // The meter's 3 intervals lie within the run: fps >= 3 / seconds
    // (arithmetic of one clock, whatever the load).
    assert!(fps * secs >= 3.0 - 1e-9, "fps {fps} over {secs} s: {v}");
    // An upper bound on a limited rate (behaviour, not speed): the limiter
    // lets a frame in up to a quarter period early, so the 4 frames are
    // pinned over at least 2.75 s; the meter ticks after each pin, and
    // 0.25 s is allowed for its first tick coming that much later than
    // its pin on a loaded host: at most 3 / 2.5 = 1.2 fps, below what
    // counting frames over the run would read (4 / 2.8 s = 1.4, unless the
    // first frame came over half a second after the start).
    assert!(fps <= 1.2, "fps {fps} over 4 frames: {v}");
    // The limiter itself, without the meter: the run holds those 2.75 s.
    assert!(secs >= 2.75 - 1e-6, "4 frames in {secs} s at 1 fps: {v}");
}
