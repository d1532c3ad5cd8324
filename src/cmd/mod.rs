//! One module per subcommand.

use anyhow::Context;
use shm_layout::BusName;

pub use bench::BenchArgs;
pub use bridge::BridgeArgs;
pub use chaos::ChaosArgs;
pub use clean::CleanArgs;
pub use consume::ConsumeArgs;
pub use demo::DemoArgs;
pub use inspect::InspectArgs;
pub use list::ListArgs;
pub use pipe::{PipeConsumeArgs, PipeProduceArgs};
pub use produce::ProduceArgs;
pub use snapshot::SnapshotArgs;
pub use top::TopArgs;
pub use view::ViewArgs;

pub mod bench;
pub mod bridge;
pub mod chaos;
mod child;
pub mod clean;
pub mod consume;
pub mod demo;
pub mod inspect;
pub mod list;
mod live;
pub mod pipe;
pub mod produce;
pub mod snapshot;
pub mod top;
pub mod view;

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

/// [`stop_flag`], also set once stdin reaches its end if `on_stdin_eof`
/// (`--stop-on-stdin-eof`: how `bench` and `chaos` stop a process where
/// there is no SIGTERM to send, on Windows).
fn stop_flag_or_stdin_eof(
    on_stdin_eof: bool,
) -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let stop = stop_flag()?;
    if on_stdin_eof {
        let flag = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            // Whatever arrives is discarded; an error ends the wait too.
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    Ok(stop)
}

/// The monotonic clock every framebus timestamp uses (`CLOCK_MONOTONIC` on
/// Linux), in nanoseconds.
fn monotonic_ns() -> u64 {
    framebus_producer::monotonic_ns()
}
