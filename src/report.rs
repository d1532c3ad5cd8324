//! Latency figures and the tables printed at the end of runs.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyUs {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// A histogram of nanosecond latencies (1 ns .. 1 h, 3 significant digits).
pub struct Latencies(Histogram<u64>);

impl Latencies {
    pub fn new() -> Self {
        // Bounds are constants that hdrhistogram accepts; failure is a bug.
        Self(Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds"))
    }

    pub fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.max(1));
    }

    pub fn summary(&self) -> LatencyUs {
        if self.0.is_empty() {
            return LatencyUs::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencyUs {
            p50: us(self.0.value_at_quantile(0.50)),
            p90: us(self.0.value_at_quantile(0.90)),
            p99: us(self.0.value_at_quantile(0.99)),
            p999: us(self.0.value_at_quantile(0.999)),
            max: us(self.0.max()),
            mean: self.0.mean() / 1000.0,
        }
    }
}

/// How a rate limit or target reads in a table: `unlimited` for 0 (no
/// limit, or unpaced), else the number. JSON carries the number itself, 0
/// included, never `null`.
pub fn rate_cell(fps: f64) -> String {
    if fps > 0.0 {
        format!("{fps}")
    } else {
        UNLIMITED.into()
    }
}

/// The one word every table uses for "no limit".
pub const UNLIMITED: &str = "unlimited";

/// The rate of a run of events: intervals between the first event and the
/// last over the time they span, so a run of N events counts N - 1
/// intervals (events at 0, 1, .., 5 s are 1 per second, not 1.2).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateMeter {
    first: Option<std::time::Instant>,
    last: Option<std::time::Instant>,
    events: u64,
}

impl RateMeter {
    /// Records one event at `at`.
    pub fn tick(&mut self, at: std::time::Instant) {
        self.first.get_or_insert(at);
        self.last = Some(at);
        self.events += 1;
    }

    /// Events per second; 0 with fewer than two events.
    pub fn fps(&self) -> f64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) if self.events >= 2 && b > a => {
                (self.events - 1) as f64 / (b - a).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// A plain text table with right-aligned columns after the first.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut l = Latencies::new();
        for i in 1..=1000u64 {
            l.record(i * 1000);
        }
        let s = l.summary();
        assert!((s.p50 - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.max - 1000.0).abs() < 1.0, "{s:?}");
        assert_eq!(Latencies::new().summary(), LatencyUs::default());
    }

    #[test]
    fn rates_count_intervals() {
        let t0 = std::time::Instant::now();
        let mut m = RateMeter::default();
        assert_eq!(m.fps(), 0.0);
        for i in 0..=5 {
            m.tick(t0 + std::time::Duration::from_secs(i));
        }
        assert!((m.fps() - 1.0).abs() < 1e-9, "{}", m.fps());
        let mut one = RateMeter::default();
        one.tick(t0);
        assert_eq!(one.fps(), 0.0);
        assert_eq!(rate_cell(0.0), "unlimited");
        assert_eq!(rate_cell(15.0), "15");
        assert_eq!(rate_cell(2.5), "2.5");
    }

    #[test]
    fn tables_align() {
        let t = table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "a    bb\nxyz   1\n");
    }
}

/// `s` safe to print on a terminal: control characters (ESC, BEL, CR, ...)
/// and other non-printing characters become `\u{..}` escapes, so text
/// another process wrote (a consumer's name, a path read from a bus header,
/// a bridge's stats) cannot drive the terminal.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if unprintable(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that must not reach a terminal raw: controls (C0, DEL, C1)
/// and the invisible and bidirectional formatting characters.
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// JSON text safe to print on a terminal, meaning the same: serde_json
/// escapes only the C0 controls, so a string another process wrote (a
/// consumer's name) could still carry DEL, a C1 control such as CSI
/// (U+009B) or a bidi override. Those become `\uXXXX` escapes (all are in
/// the Basic Multilingual Plane, and outside strings JSON text is printable
/// ASCII and whitespace, so only string contents change, and they decode
/// to the same text). C0 characters are left alone: inside strings serde
/// has escaped them already, outside they are the layout's newlines.
pub fn terminal_safe_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c >= '\u{7f}' && unprintable(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("cam\u{1b}[2Jx\u{7}"), "cam\\u{1b}[2Jx\\u{7}");
        assert_eq!(printable("a\nb\rc\td"), "a\\u{a}b\\u{d}c\\u{9}d");
        assert_eq!(printable("r\u{202e}evil"), "r\\u{202e}evil");
        assert_eq!(printable("verify-é"), "verify-é");
        assert_eq!(printable("a\u{7f}b\u{9b}c"), "a\\u{7f}b\\u{9b}c");
    }

    #[test]
    fn json_keeps_its_meaning_without_raw_controls() {
        let name = "cam\u{1b}[2J\u{7f}\u{9b}31m\u{202e}é\u{2066}";
        let v = serde_json::json!({"name": name, "n": 1});
        // Pretty: its newlines between fields stay newlines.
        let text = super::terminal_safe_json(&serde_json::to_string_pretty(&v).expect("json"));
        assert!(
            text.chars().all(|c| c == '\n' || !super::unprintable(c)),
            "{text:?}"
        );
        assert!(text.lines().count() > 1, "{text}");
        assert!(
            text.contains("\\u007f") && text.contains("\\u009b") && text.contains("\\u202e"),
            "{text}"
        );
        assert!(text.contains('é'), "printable text stays as it is: {text}");
        let back: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back, v);
    }
}
