//! `framebus clean`: removes what crashed producers left behind — shared
//! memory objects and consumers' FIFOs — but never a live producer's bus.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use framebus_producer::{buses_on_machine, clean, CleanOutcome, ProducerError};
use serde_json::json;

/// `framebus clean`.
#[derive(Debug, Args)]
#[command(
    after_help = "A bus is stale when no producer holds its lock (a producer holds it for its\nwhole life; the kernel drops it when the producer dies). Live buses, other\nusers' objects and objects that are not framebus buses are left alone.\n\nExamples:\n  framebus clean --bus cam0\n  framebus clean --all"
)]
pub struct CleanArgs {
    /// The bus to clean.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub bus: Option<String>,
    /// Every bus on this machine with leftovers of this user.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CleanArgs) -> anyhow::Result<ExitCode> {
    let buses = match &args.bus {
        Some(b) => vec![super::bus_name(b)?],
        None => buses_on_machine(),
    };
    if buses.is_empty() && args.bus.is_none() && !args.json {
        println!("nothing to clean");
        return Ok(ExitCode::SUCCESS);
    }
    let mut report = Vec::new();
    let mut failed = 0;
    for bus in &buses {
        match clean(bus) {
            Ok(CleanOutcome::Live { pid }) => {
                if !args.json {
                    println!("{bus}: left alone, its producer (process {pid}) is running");
                }
                report.push(json!({"bus": bus.as_str(), "live": true, "pid": pid}));
            }
            Ok(CleanOutcome::Removed {
                shm,
                pid,
                fifos,
                lock,
            }) => {
                if !args.json {
                    match (&shm, fifos.len(), &lock) {
                        (None, 0, None) => println!("{bus}: nothing left behind"),
                        _ => {
                            let what = shm
                                .iter()
                                .cloned()
                                .chain(fifos.iter().map(|f| f.display().to_string()))
                                .chain(lock.iter().cloned());
                            println!(
                                "{bus}: removed {} (left by process {pid})",
                                what.collect::<Vec<_>>().join(", ")
                            );
                        }
                    }
                }
                let fifos: Vec<String> = fifos.iter().map(|f| f.display().to_string()).collect();
                report.push(json!({"bus": bus.as_str(), "live": false, "shm": shm, "fifos": fifos, "lock": lock, "pid": pid}));
            }
            // With --all, another user's bus (its lock or object is not
            // ours to touch) or a foreign object is left alone, as the help
            // says; asked for by name, it is an error.
            Err(e) if args.bus.is_none() && not_ours(&e) => {
                if !args.json {
                    println!("{bus}: left alone: {e}");
                }
                report.push(json!({"bus": bus.as_str(), "left_alone": e.to_string()}));
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {bus}: {e}");
                report.push(json!({"bus": bus.as_str(), "error": e.to_string()}));
            }
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&json!({"buses": report})).context("JSON")?
        );
    }
    if failed > 0 && args.bus.is_some() {
        bail!("could not clean bus {}", buses[0]);
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether cleaning failed because the bus is another user's (its lock or
/// object cannot be opened) or its object is not a framebus bus of ours.
fn not_ours(e: &ProducerError) -> bool {
    match e {
        ProducerError::Foreign { .. } => true,
        ProducerError::Os { source, .. } => source.kind() == std::io::ErrorKind::PermissionDenied,
        _ => false,
    }
}
