//! `framebus snapshot` (being written).

use std::process::ExitCode;

use clap::Args;

/// `framebus snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Bus name.
    #[arg(long)]
    pub bus: Option<String>,
}

pub fn run(_args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("framebus snapshot is not available in this build yet")
}
