//! `framebus top`: a refreshing terminal view of one or all buses, one row
//! per consumer (like `pw-top`), drawn with ratatui on crossterm; `--once`
//! prints one frame of it as text, `--json` an NDJSON stream for scripts.
//! Every figure is read from shared memory (the rates the producer and the
//! consumers keep in the bus): `top` registers nothing and sends nothing.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use framebus_consumer::BusSnapshot;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::Constraint;
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Row, Table};
use ratatui::Frame;
use serde_json::json;

use super::live;
use crate::report::{rate_cell, table, terminal_safe_json};

/// `framebus top`.
#[derive(Debug, Args)]
#[command(
    after_help = "One row per bus (its producer: state, publish rate over its recent window vs its\nnominal rate) and below it one row per consumer: name, pid, measured fps vs its\nlimit, skipped frames (sequence gaps), coalesced triggers, latency p50/p99 over\nits recent window (publish -> pinned), pins held, state (`dead`: its process is\ngone and the producer has not reclaimed it yet). Keys: q, Esc or Ctrl-C quit.\n\n--once prints one table and exits; --json prints one JSON object per refresh\n(NDJSON: {\"time_s\", \"buses\": [...]}) until --count refreshes or Ctrl-C.\n\nExamples:\n  framebus top\n  framebus top --bus cam0 --interval 0.5\n  framebus top --once\n  framebus top --json --count 10 | jq '.buses[].consumers[].skipped'"
)]
pub struct TopArgs {
    /// Show only this bus (default: every bus `framebus list` shows).
    #[arg(long)]
    pub bus: Option<String>,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
    pub interval: f64,
    /// Print one table and exit (no terminal needed).
    #[arg(long, conflicts_with = "json")]
    pub once: bool,
    /// Print one JSON object per refresh (NDJSON) instead of the terminal view.
    #[arg(long)]
    pub json: bool,
    /// With --json: stop after this many refreshes (default: until Ctrl-C).
    #[arg(long, requires = "json")]
    pub count: Option<u64>,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && (0.01..=3600.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{s:?} is not a refresh interval: use seconds from 0.01 to 3600"
        )),
    }
}

/// Column titles of the table (`--once` and the terminal view).
pub const HEADER: [&str; 11] = [
    "bus / consumer",
    "pid",
    "state",
    "fps",
    "limit",
    "skipped",
    "coalesced",
    "p50 us",
    "p99 us",
    "pins",
    "frames",
];

pub fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    let bus = args.bus.as_deref().map(super::bus_name).transpose()?;
    let interval = Duration::from_secs_f64(args.interval);
    if args.once {
        let buses = live::read_buses(bus.as_ref())?;
        print!("{}", table(&HEADER, &rows(&buses)));
        println!("{}", footer(&buses));
        return Ok(ExitCode::SUCCESS);
    }
    let stop = super::stop_flag()?;
    if args.json {
        let started = Instant::now();
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let buses = live::read_buses(bus.as_ref())?;
            let v = json!({
                "time_s": started.elapsed().as_secs_f64(),
                "buses": buses.iter().map(live::bus_json).collect::<Vec<_>>(),
            });
            println!("{}", terminal_safe_json(&v.to_string()));
            n += 1;
            if args.count.is_some_and(|c| n >= c) {
                break;
            }
            sleep_unless_stopped(interval, &stop);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "framebus top draws on a terminal, but stdout is not one: use --once for one table or --json for a stream"
        );
    }
    interactive(bus.as_ref(), interval)
}

/// Sleeps `d`, waking early (every 50 ms) when `stop` is set.
fn sleep_unless_stopped(d: Duration, stop: &std::sync::atomic::AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// The terminal view: alternate screen, redraw every `interval`, quit on
/// q / Esc / Ctrl-C. The terminal is restored on every way out.
fn interactive(bus: Option<&shm_layout::BusName>, interval: Duration) -> anyhow::Result<ExitCode> {
    let mut terminal = ratatui::try_init().map_err(|e| {
        anyhow::Error::new(e).context("cannot set up the terminal; use --once or --json instead")
    })?;
    let result = (|| -> anyhow::Result<()> {
        loop {
            let buses = live::read_buses(bus)?;
            terminal.draw(|f| draw(f, &buses))?;
            let until = Instant::now() + interval;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if !event::poll(left)? {
                    break;
                }
                if let Event::Key(k) = event::read()? {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if k.kind == KeyEventKind::Press
                        && (ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc))
                    {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    result.map(|()| ExitCode::SUCCESS)
}

/// Draws the table of `buses` over the whole frame.
pub fn draw(f: &mut Frame<'_>, buses: &[BusSnapshot]) {
    let header = Row::new(HEADER).style(Style::default().add_modifier(Modifier::BOLD));
    let body: Vec<Row> = rows(buses)
        .into_iter()
        .zip(row_kinds(buses))
        .map(|(cells, is_bus)| {
            let r = Row::new(cells);
            if is_bus {
                r.style(Style::default().add_modifier(Modifier::BOLD))
            } else {
                r
            }
        })
        .collect();
    let widths = [
        Constraint::Min(18),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(9),
    ];
    let title = format!(" framebus top: {} (q quits) ", footer(buses));
    let t = Table::new(body, widths)
        .header(header)
        .block(Block::bordered().title(title));
    f.render_widget(t, f.area());
}

/// Whether each row of [`rows`] is a bus row (`true`) or a consumer row.
fn row_kinds(buses: &[BusSnapshot]) -> Vec<bool> {
    buses
        .iter()
        .flat_map(|b| std::iter::once(true).chain(b.consumers.iter().map(|_| false)))
        .collect()
}

/// The table's rows: per bus, a producer row, then its consumers indented.
pub fn rows(buses: &[BusSnapshot]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in buses {
        let state = live::bus_state(b);
        out.push(vec![
            b.bus.clone(),
            b.producer_pid.to_string(),
            state.to_owned(),
            format!("{:.1}", b.publish_fps),
            rate_cell(b.nominal_fps),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            b.frames_published.to_string(),
        ]);
        for c in &b.consumers {
            out.push(vec![
                format!(
                    "  {}",
                    if c.name.is_empty() {
                        "-".to_owned()
                    } else {
                        crate::report::printable(&c.name)
                    }
                ),
                c.pid.to_string(),
                live::consumer_state(c),
                format!("{:.1}", c.fps),
                rate_cell(c.max_fps),
                c.skipped.to_string(),
                c.coalesced.to_string(),
                format!("{:.0}", c.latency_p50_ns as f64 / 1e3),
                format!("{:.0}", c.latency_p99_ns as f64 / 1e3),
                format!("{}/{}", c.pinned_slots.len(), b.pins_per_consumer),
                c.frames.to_string(),
            ]);
        }
    }
    out
}

/// `N bus(es), M consumer(s)`, with the stale buses' clean commands.
fn footer(buses: &[BusSnapshot]) -> String {
    let consumers: usize = buses.iter().map(|b| b.consumers.len()).sum();
    let mut s = format!("{} bus(es), {consumers} consumer(s)", buses.len());
    for b in buses.iter().filter(|b| live::bus_state(b) == "stale") {
        s.push_str(&format!(
            "; {} is stale: framebus clean --bus {}",
            b.bus, b.bus
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use framebus_consumer::ConsumerSnapshot;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn snapshot() -> BusSnapshot {
        BusSnapshot {
            bus: "cam0".into(),
            instance_id: 1,
            producer_pid: 4242,
            producer_alive: true,
            producer_state: "running".into(),
            width: 640,
            height: 480,
            stride: 640,
            format: shm_layout::PixelFormat::Gray8,
            significant_bits: 8,
            slot_count: 18,
            max_consumers: 8,
            pins_per_consumer: 2,
            nominal_fps: 30.0,
            total_size: 1 << 20,
            trigger_dir: "/tmp/x".into(),
            frames_published: 900,
            latest: Some((900, 3)),
            heartbeat_age_ms: 10.0,
            last_publish_us: 50.0,
            publish_fps: 29.9,
            slots: Vec::new(),
            consumers: vec![ConsumerSnapshot {
                index: 0,
                state: "connected".into(),
                pid: 777,
                generation: 1,
                name: "verify".into(),
                frames: 300,
                coalesced: 4,
                last_latency_ns: 1000,
                last_seq: 899,
                skipped: 598,
                fps: 10.0,
                window_ms: 2000,
                latency_p50_ns: 120_000,
                latency_p99_ns: 1_500_000,
                window_age_ms: Some(20.0),
                max_fps: 10.0,
                alive: true,
                pinned_slots: vec![3],
            }],
        }
    }

    #[test]
    fn draws_a_row_per_bus_and_consumer() {
        let mut terminal = Terminal::new(TestBackend::new(110, 8)).expect("terminal");
        let buses = [snapshot()];
        terminal.draw(|f| draw(f, &buses)).expect("draw");
        let buf = terminal.backend().buffer();
        let lines: Vec<String> = (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_owned())
                    .collect()
            })
            .collect();
        let text = lines.join("\n");
        assert!(
            text.contains("framebus top: 1 bus(es), 1 consumer(s)"),
            "{text}"
        );
        assert!(text.contains("skipped"), "{text}");
        let bus_row = lines.iter().find(|l| l.contains("cam0")).expect(&text);
        assert!(
            bus_row.contains("4242") && bus_row.contains("29.9"),
            "{bus_row}"
        );
        let row = lines.iter().find(|l| l.contains("verify")).expect(&text);
        for cell in [
            "777",
            "connected",
            "10.0",
            "598",
            "120",
            "1500",
            "1/2",
            "300",
        ] {
            assert!(row.contains(cell), "{cell} missing in {row:?}");
        }
    }

    #[test]
    fn a_dead_consumer_and_a_stale_bus_say_so() {
        let mut s = snapshot();
        s.producer_alive = false;
        s.consumers[0].alive = false;
        let rows = rows(&[s.clone()]);
        assert_eq!(rows[0][2], "stale");
        assert_eq!(rows[1][2], "dead");
        assert!(footer(&[s]).contains("framebus clean --bus cam0"));
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("0.5"), Ok(0.5));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("x").is_err());
    }
}
