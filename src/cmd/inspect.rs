//! `framebus inspect`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use framebus_consumer::inspect;
use serde_json::json;

use crate::report::{printable, rate_cell, table, terminal_safe_json};

/// `framebus inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Bus name.
    #[arg(long)]
    pub bus: String,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let bus = super::bus_name(&args.bus)?;
    let s = inspect(&bus).with_context(|| format!("cannot inspect bus {bus}"))?;
    // Counters of `framebus bridge` ends on this bus (files beside the
    // trigger directories, not in shared memory).
    let bridges = framebus_bridge::stats::read_stats(&bus);
    if args.json {
        let v = json!({
            "bus": s.bus,
            "instance_id": format!("{:016x}", s.instance_id),
            "producer": {
                "pid": s.producer_pid,
                "alive": s.producer_alive,
                "state": s.producer_state,
                "frames_published": s.frames_published,
                "heartbeat_age_ms": s.heartbeat_age_ms,
                "last_publish_us": s.last_publish_us,
                "publish_fps": s.publish_fps,
            },
            "geometry": {
                "width": s.width, "height": s.height, "stride": s.stride,
                "pixel_format": s.format.name(), "pixel_format_code": s.format.code(),
                "channels": s.format.channels(), "bytes_per_pixel": s.format.bytes_per_pixel(),
                "significant_bits": s.significant_bits,
                "slot_count": s.slot_count, "max_consumers": s.max_consumers,
                "pins_per_consumer": s.pins_per_consumer, "nominal_fps": s.nominal_fps,
                "total_size": s.total_size,
            },
            "trigger_dir": s.trigger_dir,
            "latest": s.latest.map(|(seq, slot)| json!({"seq": seq, "slot": slot})),
            "slots": s.slots.iter().map(|x| json!({
                "index": x.index, "seq": x.seq, "pins": x.pins, "writing": x.writing, "latest": x.latest,
            })).collect::<Vec<_>>(),
            "consumers": s.consumers.iter().map(|c| json!({
                "index": c.index, "state": c.state, "alive": c.alive, "pid": c.pid,
                "generation": c.generation, "name": c.name, "frames": c.frames,
                "coalesced": c.coalesced, "last_latency_us": c.last_latency_ns as f64 / 1e3,
                "last_seq": c.last_seq, "max_fps": c.max_fps, "pinned_slots": c.pinned_slots,
                "skipped": c.skipped, "fps": c.fps, "window_ms": c.window_ms,
                "latency_p50_us": c.latency_p50_ns as f64 / 1e3,
                "latency_p99_us": c.latency_p99_ns as f64 / 1e3,
                "window_age_ms": c.window_age_ms,
            })).collect::<Vec<_>>(),
            "bridges": bridges.iter().map(|b| {
                let mut v = serde_json::to_value(&b.stats).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("alive".into(), json!(b.alive));
                    o.insert("age_ms".into(), json!(b.age_ms));
                }
                v
            }).collect::<Vec<_>>(),
        });
        let mut v = v;
        if let (Some(hint), Some(o)) = (clean_hint(&s), v.as_object_mut()) {
            o.insert("clean".into(), json!(hint));
        }
        println!("{}", terminal_safe_json(&serde_json::to_string_pretty(&v)?));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "bus {}  instance {:016x}  producer pid {} ({}, {})",
        s.bus,
        s.instance_id,
        s.producer_pid,
        s.producer_state,
        if s.producer_alive { "alive" } else { "gone" }
    );
    println!(
        "geometry {}x{} {}, stride {}, {} slots, {} consumers x {} pins, {:.1} MiB, nominal {} fps",
        s.width,
        s.height,
        format_cell(s.format, s.significant_bits),
        s.stride,
        s.slot_count,
        s.max_consumers,
        s.pins_per_consumer,
        s.total_size as f64 / (1 << 20) as f64,
        rate_cell(s.nominal_fps)
    );
    if let Some(hint) = clean_hint(&s) {
        println!("the producer is gone: this bus is stale; remove it with: {hint}");
    }
    println!("trigger FIFOs in {}", printable(&s.trigger_dir));
    println!(
        "published {} frames ({} fps over the last window), latest {}, heartbeat {:.0} ms ago, last publish {:.1} us\n",
        s.frames_published,
        format_args!("{:.1}", s.publish_fps),
        s.latest.map_or("none".to_owned(), |(seq, slot)| format!(
            "seq {seq} in slot {slot}"
        )),
        s.heartbeat_age_ms,
        s.last_publish_us
    );
    let slot_rows: Vec<Vec<String>> = s
        .slots
        .iter()
        .map(|x| {
            let mut flags = Vec::new();
            if x.latest {
                flags.push("latest");
            }
            if x.writing {
                flags.push("writing");
            }
            vec![
                x.index.to_string(),
                x.seq.to_string(),
                format!("{:#x}", x.pins),
                flags.join(","),
            ]
        })
        .collect();
    print!("{}", table(&["slot", "seq", "pins", "flags"], &slot_rows));
    println!();
    if s.consumers.is_empty() {
        println!("no consumers attached");
    } else {
        let rows: Vec<Vec<String>> = s
            .consumers
            .iter()
            .map(|c| {
                vec![
                    c.index.to_string(),
                    printable(&c.name),
                    c.state.clone(),
                    if c.alive { "yes" } else { "no" }.into(),
                    c.pid.to_string(),
                    c.frames.to_string(),
                    format!("{:.1}", c.fps),
                    rate_cell(c.max_fps),
                    c.skipped.to_string(),
                    c.coalesced.to_string(),
                    format!("{:.0}", c.latency_p50_ns as f64 / 1e3),
                    format!("{:.0}", c.latency_p99_ns as f64 / 1e3),
                    format!("{:?}", c.pinned_slots),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "entry",
                    "name",
                    "state",
                    "alive",
                    "pid",
                    "frames",
                    "fps",
                    "max_fps",
                    "skipped",
                    "coalesced",
                    "p50_us",
                    "p99_us",
                    "pinned"
                ],
                &rows
            )
        );
    }
    if !bridges.is_empty() {
        println!();
        print_bridges(&bridges);
    }
    Ok(ExitCode::SUCCESS)
}

/// For a bus whose producer is gone: the command that removes it.
fn clean_hint(s: &framebus_consumer::BusSnapshot) -> Option<String> {
    (!s.producer_alive).then(|| format!("framebus clean --bus {}", s.bus))
}

/// The bridges of this bus, one row each.
fn print_bridges(bridges: &[framebus_bridge::StatsReport]) {
    let rows: Vec<Vec<String>> = bridges
        .iter()
        .map(|b| {
            let s = &b.stats;
            vec![
                format!("bridge {}", s.role.as_str()),
                printable(&s.key),
                s.pid.to_string(),
                if b.alive { "running" } else { "gone" }.into(),
                s.peers.to_string(),
                s.frames().to_string(),
                s.dropped().to_string(),
                format!("{:.1}", s.fps),
                format!("{:.2}", s.bytes_per_s / 1e6),
                s.last_seq.to_string(),
                format!("{:.1}", b.age_ms as f64 / 1e3),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "bridge", "key", "pid", "state", "peers", "frames", "dropped", "fps", "MB/s",
                "last_seq", "age_s"
            ],
            &rows
        )
    );
    for b in bridges.iter().filter(|b| b.alive) {
        let s = &b.stats;
        let detail = match s.role {
            framebus_bridge::Role::Out => format!(
                "  out {}: {} sent ({} bytes, {}), {} skipped, {} unmatched, {} send errors",
                s.key, s.frames_sent, s.bytes_sent, s.compression, s.frames_skipped, s.frames_unmatched, s.send_errors
            ),
            framebus_bridge::Role::In => format!(
                "  in {}: {} received ({} bytes), {} published, {} lost upstream, {} overrun, {} invalid, {} stale, {} buses created",
                s.key, s.frames_received, s.bytes_received, s.frames_published, s.frames_lost, s.dropped_overrun, s.dropped_invalid, s.dropped_stale, s.buses_created
            ),
        };
        println!("{}", printable(&detail));
        if let Some(e) = &s.last_error {
            println!("    last problem: {}", printable(e));
        }
    }
}

/// `gray8`, `gray16`, `gray16 (12-bit)`, `bgr8`...
pub fn format_cell(format: shm_layout::PixelFormat, significant_bits: u8) -> String {
    if significant_bits < format.container_bits() {
        format!("{format} ({significant_bits}-bit)")
    } else {
        format.name().to_owned()
    }
}
