//! `framebus demo`: the README's first command. A fake 640x480 camera at
//! 60 fps and three consumer processes at 60, 15 and 2 fps, each a real
//! process of this binary, as a user would start them.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use serde_json::json;

use super::child::{last_json, lines, stoppable, Reaper};
use super::consume::ConsumeSummary;
use crate::parse::parse_seconds;
use crate::report::table;

/// `framebus demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the consumers run, in seconds.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// The framebus binary to run as producer and consumers (default: this one).
    #[arg(long, hide = true)]
    pub exe: Option<PathBuf>,
}

const RATES: [f64; 3] = [60.0, 15.0, 2.0];

#[derive(Debug, Deserialize)]
struct ProducerSummary {
    frames: u64,
    fps: f64,
    publish_us_mean: f64,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let exe = match args.exe {
        Some(p) => p,
        None => std::env::current_exe().context("cannot find the framebus binary to start")?,
    };
    let bus = format!("demo-{}", std::process::id());
    let quiet = |c: &mut Command| {
        if std::env::var_os("RUST_LOG").is_none() {
            c.env("RUST_LOG", "warn");
        }
    };
    let mut cmd = Command::new(&exe);
    cmd.args([
        "produce",
        "--bus",
        &bus,
        "--size",
        "640x480",
        "--fps",
        "60",
        "--max-consumers",
        "4",
        "--json",
    ])
    .stdout(Stdio::piped());
    stoppable(&mut cmd);
    quiet(&mut cmd);
    let mut producer = Reaper(Some(cmd.spawn().context("cannot start the producer")?));
    let prod_out = lines(
        producer
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("producer stdout")?,
    );
    match prod_out.recv_timeout(Duration::from_secs(10)) {
        Ok(l) if l.starts_with("ready ") => {}
        _ => bail!("the producer did not become ready within 10 s"),
    }
    eprintln!("demo: bus {bus}, 640x480 fake camera at 60 fps; consumers at 60, 15 and 2 fps for {} s ...", args.seconds);
    let mut consumers = Vec::new();
    for rate in RATES {
        let mut cmd = Command::new(&exe);
        cmd.args(["consume", "--bus", &bus, "--algo", "verify", "--json"])
            .args([
                "--max-fps",
                &rate.to_string(),
                "--duration",
                &args.seconds.to_string(),
            ])
            .args(["--name", &format!("demo-{rate}fps")])
            .stdout(Stdio::piped());
        quiet(&mut cmd);
        let mut child = Reaper(Some(cmd.spawn().context("cannot start a consumer")?));
        let rx = lines(
            child
                .0
                .as_mut()
                .and_then(|c| c.stdout.take())
                .context("consumer stdout")?,
        );
        consumers.push((rate, child, rx));
    }
    let timeout = Duration::from_secs_f64(args.seconds + 20.0);
    let mut results = Vec::new();
    for (rate, mut child, rx) in consumers {
        let summary: ConsumeSummary = last_json(&rx, timeout)?;
        child.wait(Duration::from_secs(10))?;
        results.push((rate, summary));
    }
    // A clean stop (SIGTERM, or stdin closed on Windows): the producer
    // removes the bus and prints its summary.
    producer.stop().context("cannot stop the producer")?;
    let prod: ProducerSummary = last_json(&prod_out, Duration::from_secs(10))?;
    producer.wait(Duration::from_secs(10))?;
    let bad: u64 = results.iter().map(|(_, s)| s.bad_frames).sum();
    if args.json {
        let v = json!({
            "producer": {"fps": prod.fps, "frames": prod.frames, "publish_us_mean": prod.publish_us_mean},
            "consumers": results.iter().map(|(rate, s)| json!({"max_fps": rate, "summary": s})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string(&v)?);
    } else {
        let mut rows = vec![vec![
            "producer".to_owned(),
            "60".into(),
            format!("{:.1}", prod.fps),
            prod.frames.to_string(),
            format!("publish {:.0} us", prod.publish_us_mean),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
        ]];
        for (rate, s) in &results {
            rows.push(vec![
                format!("consumer {rate} fps"),
                rate.to_string(),
                format!("{:.1}", s.fps),
                s.frames.to_string(),
                format!("{:.0}", s.latency_us.p50),
                format!("{:.0}", s.latency_us.p99),
                format!("{:.0}", s.latency_us.max),
                s.bad_frames.to_string(),
                s.skipped.to_string(),
                s.coalesced.to_string(),
            ]);
        }
        print!(
            "{}",
            table(
                &[
                    "process",
                    "target fps",
                    "fps",
                    "frames",
                    "latency p50 us",
                    "p99 us",
                    "max us",
                    "bad",
                    "skipped",
                    "coalesced"
                ],
                &rows
            )
        );
        println!("latency: publish -> frame pinned by the consumer; bad: frames that failed the byte-for-byte pattern check;");
        println!("skipped: frames published but not taken (a consumer at 15 fps skips 3 of every 4 of a 60 fps camera)");
    }
    Ok(if bad > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
