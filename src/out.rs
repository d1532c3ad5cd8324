//! Standard output that tolerates a reader going away.
//!
//! std's `println!` panics when stdout is a pipe whose reader has exited
//! (`framebus clean --all | head -0`): Rust ignores SIGPIPE, so the write
//! fails with `EPIPE`. framebus must keep ignoring SIGPIPE (the producer
//! learns that a consumer died from `EPIPE` on its trigger FIFO), so instead
//! every stdout write of the CLI goes through here: a closed stdout ends the
//! command quietly with exit status 0, after the usual cleanup (destructors
//! run: child processes are reaped, a bus is removed).

use std::any::Any;
use std::fmt;
use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

/// The reader of stdout has gone (`EPIPE`): nothing more can be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes `bytes` to stdout and flushes. A closed pipe is [`StdoutClosed`]
/// (which `main` turns into a quiet exit 0); other failures say so.
pub fn write_all(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
    }
}

/// What the crate's `print!` and `println!` call. On a closed pipe it
/// unwinds with a [`StdoutClosed`] payload (no panic message: the panic
/// hook is not called by `resume_unwind`), which
/// [`quiet_on_closed_stdout`] catches; destructors run on the way.
pub fn print(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    match out.write_fmt(args) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            drop(out);
            panic::resume_unwind(Box::new(StdoutClosed))
        }
        // As std's println! does: stdout failing otherwise (a full disk
        // behind a redirection) is not something a command can go on from.
        Err(e) => panic!("failed printing to stdout: {e}"),
    }
}

/// Runs a command; a [`StdoutClosed`] unwind becomes a quiet success.
/// Any other panic carries on as it would have.
pub fn quiet_on_closed_stdout(
    run: impl FnOnce() -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    match panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(result) => result,
        Err(payload) if is_closed_payload(payload.as_ref()) => Ok(ExitCode::SUCCESS),
        Err(payload) => panic::resume_unwind(payload),
    }
}

fn is_closed_payload(payload: &(dyn Any + Send)) -> bool {
    payload.is::<StdoutClosed>()
}

/// Whether a command failed only because its stdout was closed.
pub fn is_closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<StdoutClosed>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_stdout_is_recognised_through_context() {
        let e = anyhow::Error::new(StdoutClosed).context("while listing");
        assert!(is_closed_stdout(&e));
        assert!(!is_closed_stdout(&anyhow::anyhow!("other")));
    }

    #[test]
    fn a_closed_stdout_unwind_is_a_quiet_success() {
        let code = quiet_on_closed_stdout(|| panic::resume_unwind(Box::new(StdoutClosed)));
        assert_eq!(
            format!("{:?}", code.ok()),
            format!("{:?}", Some(ExitCode::SUCCESS))
        );
        let other = panic::catch_unwind(|| {
            quiet_on_closed_stdout(|| panic::resume_unwind(Box::new("something else")))
        });
        assert!(other.is_err(), "other panics go on");
    }
}
