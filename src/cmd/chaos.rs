//! `framebus chaos` (being written).

use std::process::ExitCode;

use clap::Args;

/// `framebus chaos`.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Bus name.
    #[arg(long)]
    pub bus: Option<String>,
}

pub fn run(_args: ChaosArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("framebus chaos is not available in this build yet")
}
