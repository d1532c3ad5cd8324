//! `framebus clean` (being written).

use std::process::ExitCode;

use clap::Args;

/// `framebus clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Bus name.
    #[arg(long)]
    pub bus: Option<String>,
}

pub fn run(_args: CleanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("framebus clean is not available in this build yet")
}
