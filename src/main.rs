//! `framebus`: a multi-consumer camera frame bus over shared memory.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

// Every `print!`/`println!` of this crate goes through `out::print`, which
// ends the command quietly when stdout is a closed pipe (`framebus inspect
// --bus cam0 | head -1`) instead of panicking as std's macros do. Defined
// before the modules so that they all use these.
macro_rules! print {
    ($($arg:tt)*) => { $crate::out::print(format_args!($($arg)*)) };
}
macro_rules! println {
    () => { $crate::out::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::print(format_args!("{}\n", format_args!($($arg)*))) };
}

mod cli;
mod cmd;
mod out;
mod parse;
mod report;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours_on_stderr())
        .init();
    match out::quiet_on_closed_stdout(|| run(cli)) {
        Ok(code) => code,
        Err(e) if out::is_closed_stdout(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Runs the command the command line names.
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Produce(a) => cmd::produce::run(a),
        Command::Consume(a) => cmd::consume::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::List(a) => cmd::list::run(a),
        Command::Top(a) => cmd::top::run(a),
        Command::View(a) => cmd::view::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Snapshot(a) => cmd::snapshot::run(a),
        Command::Chaos(a) => cmd::chaos::run(a),
        Command::Clean(a) => cmd::clean::run(a),
        Command::Bridge(a) => cmd::bridge::run(a),
        Command::PipeProduce(a) => cmd::pipe::produce(a),
        Command::PipeConsume(a) => cmd::pipe::consume(a),
    }
}

/// Colours in logs only for a person at a terminal: never when stderr is a
/// file or a pipe, nor when `NO_COLOR` is set to anything non-empty
/// (<https://no-color.org>).
fn colours_on_stderr() -> bool {
    colours(
        std::env::var_os("NO_COLOR").as_deref(),
        std::io::stderr().is_terminal(),
    )
}

fn colours(no_color: Option<&std::ffi::OsStr>, terminal: bool) -> bool {
    let no_color = no_color.is_some_and(|v| !v.is_empty());
    !no_color && terminal
}

/// The error and its causes on one line, `outer: inner: ...`, leaving out a
/// cause whose text the line already holds (library errors often print
/// their source in their own message too).
fn error_chain(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    #[test]
    fn colours_only_at_a_terminal_without_no_color() {
        assert!(super::colours(None, true));
        assert!(!super::colours(None, false));
        assert!(!super::colours(Some(OsStr::new("1")), true));
        // NO_COLOR set but empty does not count (no-color.org).
        assert!(super::colours(Some(OsStr::new("")), true));
    }
}
