//! One module per subcommand.

use std::process::ExitCode;

use anyhow::Context;
use shm_layout::BusName;

use crate::cli::{Cli, Command};

mod consume;
mod demo;
mod inspect;
mod produce;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Produce(a) => produce::run(a),
        Command::Consume(a) => consume::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Demo(a) => demo::run(a),
    }
}

/// Validates a `--bus` value.
fn bus_name(name: &str) -> anyhow::Result<BusName> {
    BusName::new(name).context("bad --bus")
}

/// A stop flag set by SIGINT/SIGTERM.
fn stop_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    Ok(framebus_producer::stop_on_signals()?)
}
