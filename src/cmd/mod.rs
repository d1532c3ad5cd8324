//! One module per subcommand.

use std::process::ExitCode;

use anyhow::Context;
use shm_layout::BusName;

use crate::cli::{Cli, Command};

#[cfg(unix)]
pub use bench::BenchArgs;
#[cfg(unix)]
pub use bridge::BridgeArgs;
pub use chaos::ChaosArgs;
pub use clean::CleanArgs;
pub use list::ListArgs;
pub use pipe::{PipeConsumeArgs, PipeProduceArgs};
pub use snapshot::SnapshotArgs;
pub use top::TopArgs;
pub use view::ViewArgs;

#[cfg(unix)]
mod bench;
#[cfg(unix)]
mod bridge;
mod chaos;
mod child;
mod clean;
mod consume;
mod demo;
mod inspect;
mod list;
mod live;
mod pipe;
mod produce;
mod snapshot;
mod top;
mod view;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Produce(a) => produce::run(a),
        Command::Consume(a) => consume::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::List(a) => list::run(a),
        Command::Top(a) => top::run(a),
        Command::View(a) => view::run(a),
        Command::Demo(a) => demo::run(a),
        #[cfg(unix)]
        Command::Bench(a) => bench::run(a),
        Command::Snapshot(a) => snapshot::run(a),
        Command::Chaos(a) => chaos::run(a),
        Command::Clean(a) => clean::run(a),
        #[cfg(unix)]
        Command::Bridge(a) => bridge::run(a),
        Command::PipeProduce(a) => pipe::produce(a),
        Command::PipeConsume(a) => pipe::consume(a),
    }
}

/// Validates a `--bus` value.
fn bus_name(name: &str) -> anyhow::Result<BusName> {
    BusName::new(name).context("bad --bus")
}

/// The CLI's error for a failed attach: the library's message, plus, for a
/// bus whose producer is gone (a stale bus), the command that removes it.
fn attach_error(bus: &BusName, e: framebus_consumer::ConsumerError) -> anyhow::Error {
    let stale = matches!(e, framebus_consumer::ConsumerError::NotRunning { .. });
    let err = anyhow::Error::new(e).context(format!("cannot attach to bus {bus}"));
    if stale {
        err.context(format!(
            "bus {bus} is stale (its producer is gone); start a producer on it, or remove it: framebus clean --bus {bus}"
        ))
    } else {
        err
    }
}

/// A stop flag set by SIGINT/SIGTERM.
fn stop_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    Ok(framebus_producer::stop_on_signals()?)
}

/// [`stop_flag`], also set when stdin reaches its end if `stdin_close`
/// (`--stop-on-stdin-close`, how `chaos` stops a child without signals).
fn stop_flag_or_stdin_close(
    stdin_close: bool,
) -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let flag = stop_flag()?;
    if stdin_close {
        let f = std::sync::Arc::clone(&flag);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            f.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    Ok(flag)
}

/// The monotonic clock every framebus timestamp uses (`CLOCK_MONOTONIC` on
/// Linux), in nanoseconds.
fn monotonic_ns() -> u64 {
    framebus_producer::monotonic_ns()
}
