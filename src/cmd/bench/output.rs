//! What `bench` prints: tables for people, or one JSON object (`--json`).

use super::figures::RunResult;
use super::isolation::IsolationResult;
use super::Transport;
use crate::report::{rate_cell, table};

fn print_run(r: &RunResult) {
    let target = format!("{} fps", rate_cell(r.fps_target));
    println!(
        "{} {}x{} {}, {} consumer(s) running {}, producer {}, {:.1} s measured",
        match r.transport {
            Transport::Shm => "framebus (shm)",
            Transport::Pipe => "pipe",
        },
        r.width,
        r.height,
        r.format,
        r.consumers,
        r.algo,
        target,
        r.seconds
    );
    if let Some(cpu) = r.producer_cpu {
        println!("producer pinned to CPU {cpu}, consumers to the other CPUs");
    }
    match r.producer_cpu_us_per_frame {
        Some(cpu_us) => println!(
            "memcpy ceiling {:.0} frames/s ({:.1} us/frame); producer {:.0} frames/s = {:.2}x the ceiling, \
             using {:.1} us of CPU per frame ({:.2}x the memcpy time)",
            r.memcpy_fps,
            1e6 / r.memcpy_fps,
            r.producer_fps,
            r.producer_vs_memcpy,
            cpu_us,
            cpu_us * r.memcpy_fps / 1e6
        ),
        None => println!(
            "memcpy ceiling {:.0} frames/s ({:.1} us/frame); producer {:.0} frames/s = {:.2}x the ceiling",
            r.memcpy_fps,
            1e6 / r.memcpy_fps,
            r.producer_fps,
            r.producer_vs_memcpy,
        ),
    }
    let rows: Vec<Vec<String>> = r
        .processes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let l = p.latency_us.unwrap_or_default();
            let lat = |v: f64| {
                if p.latency_us.is_some() {
                    format!("{v:.0}")
                } else {
                    "-".into()
                }
            };
            vec![
                if p.role == "producer" {
                    "producer".into()
                } else {
                    format!("consumer {i}")
                },
                p.max_fps.map_or("-".into(), rate_cell),
                format!("{:.0}", p.fps),
                p.cpu_pct.map_or("-".into(), |c| format!("{c:.0}")),
                p.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}")),
                p.publish_us.map_or("-".into(), |u| format!("{u:.0}")),
                lat(l.p50),
                lat(l.p90),
                lat(l.p99),
                lat(l.p999),
                lat(l.max),
                p.coalesced.map_or("-".into(), |c| c.to_string()),
                p.bad_frames.map_or("-".into(), |c| c.to_string()),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "process",
                "max fps",
                "fps",
                "cpu %",
                "peak rss MiB",
                "publish us",
                "p50 us",
                "p90",
                "p99",
                "p99.9",
                "max",
                "coalesced",
                "bad"
            ],
            &rows
        )
    );
    match r.cpu_us_per_delivered_frame {
        Some(cpu_us) => println!(
            "delivered {:.0} frames/s in all, {:.1} us of CPU per delivered frame (all processes)\n",
            r.delivered_fps, cpu_us
        ),
        None => println!(
            "delivered {:.0} frames/s in all; {}\n",
            r.delivered_fps,
            r.not_measured.join("; ")
        ),
    }
}

/// The throughput scenario's one run.
pub(super) fn throughput(r: &RunResult, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({"scenario": "throughput", "runs": [r]}))?
        );
    } else {
        print_run(r);
    }
    Ok(())
}

/// The compare scenario's two runs and their ratios.
pub(super) fn compare(shm: RunResult, pipe: RunResult, json: bool) -> anyhow::Result<()> {
    let fps_ratio = shm.consumer_fps_mean / pipe.consumer_fps_mean.max(1e-9);
    // None (null in JSON) where CPU time is not measured.
    let cpu_ratio = pipe
        .cpu_us_per_delivered_frame
        .zip(shm.cpu_us_per_delivered_frame)
        .map(|(pipe, shm)| pipe / shm.max(1e-9));
    if json {
        let v = serde_json::json!({
            "scenario": "compare", "runs": [shm, pipe],
            "ratios": {"consumer_fps_shm_over_pipe": fps_ratio, "cpu_per_frame_pipe_over_shm": cpu_ratio},
        });
        println!("{}", serde_json::to_string(&v)?);
    } else {
        print_run(&shm);
        print_run(&pipe);
        match cpu_ratio {
            Some(cpu_ratio) => println!("framebus / pipe: {fps_ratio:.1}x the frames per second per consumer, {cpu_ratio:.1}x less CPU per delivered frame"),
            None => println!("framebus / pipe: {fps_ratio:.1}x the frames per second per consumer; CPU per delivered frame not measured on this OS"),
        }
    }
    Ok(())
}

/// The isolation scenario's phases (`duration`: seconds per phase).
pub(super) fn isolation(r: &IsolationResult, duration: f64, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({"scenario": "isolation", "isolation": r}))?
        );
    } else {
        println!(
            "isolation: {}x{} at {}, a full-speed `{}` consumer, {:.1} s per phase",
            r.width,
            r.height,
            format!("{} fps", rate_cell(r.fps_target)),
            r.algo,
            duration
        );
        let rows: Vec<Vec<String>> = r
            .phases
            .iter()
            .map(|p| {
                vec![
                    p.name.to_string(),
                    format!("{:.0}", p.consumer_fps),
                    format!("{:.3}", p.ratio_to_alone),
                    format!("{:.0}", p.producer_fps),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["phase", "consumer fps", "ratio to alone", "producer fps"],
                &rows
            )
        );
        for note in &r.not_measured {
            println!("{note}");
        }
    }
    Ok(())
}

/// The sweep scenario's runs, one table row each.
pub(super) fn sweep(runs: &[RunResult], json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({"scenario": "sweep", "runs": runs}))?
        );
    } else {
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                let p99 = r
                    .processes
                    .iter()
                    .filter_map(|p| p.latency_us)
                    .map(|l| l.p99)
                    .fold(0.0, f64::max);
                let p50 = r
                    .processes
                    .iter()
                    .filter_map(|p| p.latency_us)
                    .map(|l| l.p50)
                    .fold(0.0, f64::max);
                vec![
                    format!("{}x{}", r.width, r.height),
                    r.consumers.to_string(),
                    format!("{:.0}", r.memcpy_fps),
                    format!("{:.0}", r.producer_fps),
                    format!("{:.2}", r.producer_vs_memcpy),
                    format!("{:.0}", r.consumer_fps_mean),
                    format!("{p50:.0}"),
                    format!("{p99:.0}"),
                    r.cpu_us_per_delivered_frame
                        .map_or("-".into(), |c| format!("{c:.1}")),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "size",
                    "consumers",
                    "memcpy fps",
                    "producer fps",
                    "x ceiling",
                    "consumer fps",
                    "worst p50 us",
                    "worst p99 us",
                    "cpu us/frame"
                ],
                &rows
            )
        );
        if let Some(note) = runs.iter().find_map(|r| r.not_measured.first()) {
            println!("{note}");
        }
    }
    Ok(())
}
