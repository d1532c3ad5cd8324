//! `framebus list`: every bus on this machine the caller may read, with its
//! producer's state, geometry, measured rate and consumers. Read-only: it
//! uses the consumer crate's `inspect` (no registration, no trigger).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use framebus_consumer::BusSnapshot;
use serde::Serialize;
use shm_layout::BusName;

use crate::report::{rate_cell, table, terminal_safe_json};

/// `framebus list`.
#[derive(Debug, Args)]
#[command(
    after_help = "State: alive (publishing), stopped (its process exists but has not published or\nsent a heartbeat for 2 s: SIGSTOPped, hung, or shutting down), stale (its producer\nis gone; the row names the `framebus clean --bus NAME` that removes it), starting\n(being created).\n\nfps is measured from the bus's frame counter over --sample seconds (all buses at\nonce); with --sample 0 it is the producer's nominal rate, and the header says which.\nObjects the caller may not read are left out.\n\nExamples:\n  framebus list\n  framebus list --json | jq '.buses[] | select(.state == \"stale\") | .clean'\n  framebus list --sample 0      # no waiting: nominal rates"
)]
pub struct ListArgs {
    /// Seconds over which to measure each bus's frame rate; 0 = do not
    /// measure, show the nominal rate.
    #[arg(long, default_value_t = 0.5, value_parser = parse_sample)]
    pub sample: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_sample(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && (0.0..=60.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{s:?} is not a sampling window: use seconds from 0 (no sampling) to 60"
        )),
    }
}

/// What `list --json` prints.
#[derive(Debug, Serialize)]
struct ListJson<'a> {
    /// The sampling window in seconds; 0 = rates are nominal.
    sample_s: f64,
    buses: &'a [Row],
}

/// One bus as `list --json` prints it.
#[derive(Debug, Serialize)]
struct Row {
    bus: String,
    /// `alive`, `stopped`, `stale` or `starting`.
    state: &'static str,
    producer_pid: u32,
    width: u32,
    height: u32,
    pixel_format: String,
    /// Frames per second: measured, or the nominal rate (0 = unpaced).
    fps: f64,
    /// `measured` or `nominal`.
    fps_source: &'static str,
    nominal_fps: f64,
    /// The producer's own publish rate over its recent window, from the
    /// bus header.
    publish_fps: f64,
    frames_published: u64,
    /// Consumer entries in use.
    consumers: usize,
    max_consumers: u32,
    consumer_entries: Vec<ConsumerRow>,
    /// For a stale bus: the command that removes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    clean: Option<String>,
}

#[derive(Debug, Serialize)]
struct ConsumerRow {
    name: String,
    pid: u32,
    state: String,
    frames: u64,
    /// Its rate over its recent window, from its consumer entry.
    fps: f64,
    max_fps: f64,
    skipped: u64,
    coalesced: u64,
    latency_p50_us: f64,
    latency_p99_us: f64,
}

/// A bus read once, and when.
struct Sample {
    at: Instant,
    snap: BusSnapshot,
}

pub fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    let names = framebus_producer::buses_on_machine();
    let first: Vec<(BusName, Option<Sample>)> =
        names.into_iter().map(|n| (n.clone(), read(&n))).collect();
    let sampling = args.sample > 0.0 && first.iter().any(|(_, s)| s.is_some());
    if sampling {
        std::thread::sleep(Duration::from_secs_f64(args.sample));
    }
    let mut rows = Vec::new();
    for (name, before) in first {
        let Some(before) = before else { continue };
        // The second reading; a bus gone meanwhile is shown as first read.
        let after = if sampling { read(&name) } else { None };
        rows.push(row(&before, after.as_ref()));
    }
    if args.json {
        let v = ListJson {
            sample_s: if sampling { args.sample } else { 0.0 },
            buses: &rows,
        };
        println!("{}", terminal_safe_json(&serde_json::to_string_pretty(&v)?));
        return Ok(ExitCode::SUCCESS);
    }
    print_table(&rows, sampling.then_some(args.sample));
    Ok(ExitCode::SUCCESS)
}

/// Inspects `bus` (see [`super::live::read`]) and notes when.
fn read(bus: &BusName) -> Option<Sample> {
    super::live::read(bus).map(|snap| Sample {
        at: Instant::now(),
        snap,
    })
}

fn row(before: &Sample, after: Option<&Sample>) -> Row {
    let s = after.map_or(&before.snap, |a| &a.snap);
    let state = super::live::bus_state(s);
    // Measured only over one producer's life (a restart resets the counter).
    let measured = after
        .filter(|a| a.snap.instance_id == before.snap.instance_id)
        .map(|a| {
            let frames = a
                .snap
                .frames_published
                .saturating_sub(before.snap.frames_published);
            frames as f64 / (a.at - before.at).as_secs_f64().max(1e-9)
        });
    Row {
        bus: s.bus.clone(),
        state,
        producer_pid: s.producer_pid,
        width: s.width,
        height: s.height,
        pixel_format: super::inspect::format_cell(s.format, s.significant_bits),
        fps: measured.unwrap_or(s.nominal_fps),
        fps_source: if measured.is_some() {
            "measured"
        } else {
            "nominal"
        },
        nominal_fps: s.nominal_fps,
        publish_fps: s.publish_fps,
        frames_published: s.frames_published,
        consumers: s.consumers.len(),
        max_consumers: s.max_consumers,
        consumer_entries: s
            .consumers
            .iter()
            .map(|c| ConsumerRow {
                name: c.name.clone(),
                pid: c.pid,
                state: c.state.clone(),
                frames: c.frames,
                fps: c.fps,
                max_fps: c.max_fps,
                skipped: c.skipped,
                coalesced: c.coalesced,
                latency_p50_us: c.latency_p50_ns as f64 / 1e3,
                latency_p99_us: c.latency_p99_ns as f64 / 1e3,
            })
            .collect(),
        clean: (state == "stale").then(|| format!("framebus clean --bus {}", s.bus)),
    }
}

fn print_table(rows: &[Row], sample: Option<f64>) {
    if rows.is_empty() {
        println!("no buses");
        return;
    }
    let fps_header = match sample {
        Some(s) => format!("fps (over {s} s)"),
        None => "fps (nominal)".to_owned(),
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let fps = if r.fps_source == "measured" {
                format!("{:.1}", r.fps)
            } else {
                rate_cell(r.fps)
            };
            vec![
                r.bus.clone(),
                r.state.into(),
                r.producer_pid.to_string(),
                format!("{}x{} {}", r.width, r.height, r.pixel_format),
                fps,
                format!("{}/{}", r.consumers, r.max_consumers),
                r.clean
                    .as_ref()
                    .map_or(String::new(), |c| format!("run: {c}")),
            ]
        })
        .collect();
    let header = [
        "bus",
        "state",
        "pid",
        "geometry",
        fps_header.as_str(),
        "consumers",
        "",
    ];
    print!("{}", table(&header, &cells));
    let stale = rows.iter().filter(|r| r.state == "stale").count();
    println!(
        "{} bus(es), {} alive, {} stale",
        rows.len(),
        rows.iter().filter(|r| r.state == "alive").count(),
        stale
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_windows() {
        assert_eq!(parse_sample("0"), Ok(0.0));
        assert_eq!(parse_sample("0.25"), Ok(0.25));
        assert!(parse_sample("-1").is_err());
        assert!(parse_sample("61").is_err());
        assert!(parse_sample("nan").is_err());
    }
}
