//! The [`Algorithm`] trait — how frames reach algorithm code — and the
//! built-in algorithms `mean`, `verify` and `busy:MS`.

use std::time::Duration;

use shm_layout::pattern::Pattern;

use crate::attach::BusInfo;
use crate::view::FrameView;

/// What an algorithm reports at the end of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AlgorithmSummary {
    /// Frames that failed a check (only `verify` checks).
    pub bad_frames: u64,
    /// The last value computed, if the algorithm computes one.
    pub last_value: Option<f64>,
}

/// Algorithm code with lifecycle hooks. `setup` runs on every (re)attach
/// with the bus's geometry, `process` on every frame (zero-copy: the view's
/// pixels are the shared slot, pinned for the call — see
/// [`crate::Frame::view`]), `teardown` once at the end.
pub trait Algorithm {
    /// A short name, shown in reports and `inspect`.
    fn name(&self) -> &str;

    /// Prepares for frames of this bus (buffers sized to the geometry...).
    fn setup(&mut self, _bus: &BusInfo) -> Result<(), String> {
        Ok(())
    }

    /// Processes one frame.
    fn process(&mut self, frame: &FrameView<'_>) -> Result<(), String>;

    /// Finishes; the last chance to flush results.
    fn teardown(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Figures for the end-of-run report.
    fn summary(&self) -> AlgorithmSummary {
        AlgorithmSummary::default()
    }
}

/// Mean intensity of each frame (over every channel value: for colour,
/// the mean of R, G and B; for gray16, in its units).
#[derive(Debug, Default)]
pub struct Mean {
    last: Option<f64>,
}

impl Algorithm for Mean {
    fn name(&self) -> &str {
        "mean"
    }

    fn process(&mut self, frame: &FrameView<'_>) -> Result<(), String> {
        let mut total: u64 = 0;
        if let Ok(rows) = frame.as_u16() {
            // gray16: a row of 16384 values of at most 65535 fits a u32.
            for row in rows.iter() {
                total += row.iter().map(|&v| u32::from(v)).sum::<u32>() as u64;
            }
        } else {
            for y in 0..frame.height {
                // Sum in u32 lanes per row: the compiler vectorises this
                // loop, and a row of 3 * 16384 bytes cannot overflow a u32.
                total += frame.row(y).iter().map(|&b| u32::from(b)).sum::<u32>() as u64;
            }
        }
        // Mean over every channel value (gray: every pixel).
        let values = frame.row_bytes() as f64 / f64::from(frame.format.bytes_per_channel());
        self.last = Some(total as f64 / (values * f64::from(frame.height)));
        Ok(())
    }

    fn summary(&self) -> AlgorithmSummary {
        AlgorithmSummary {
            bad_frames: 0,
            last_value: self.last,
        }
    }
}

/// Checks every byte of every frame against the fake camera's pattern for
/// its seq; a torn, stale or corrupted frame counts as bad.
#[derive(Debug, Default)]
pub struct Verify {
    pattern: Option<Pattern>,
    bad: u64,
}

impl Algorithm for Verify {
    fn name(&self) -> &str {
        "verify"
    }

    fn setup(&mut self, bus: &BusInfo) -> Result<(), String> {
        let l = &bus.layout;
        self.pattern = Some(Pattern::with_format(l.width, l.format, l.significant_bits));
        Ok(())
    }

    fn process(&mut self, frame: &FrameView<'_>) -> Result<(), String> {
        let described = |p: &Pattern| {
            (p.format(), p.significant_bits()) == (frame.format, frame.significant_bits)
        };
        if !self.pattern.as_ref().is_some_and(described) {
            self.pattern = Some(Pattern::with_format(
                frame.width,
                frame.format,
                frame.significant_bits,
            ));
        }
        let Some(pattern) = self.pattern.as_ref() else {
            return Err("verify: no pattern".into());
        };
        if let Err(m) = pattern.verify(frame.seq, frame.pixels, frame.stride as usize, frame.height)
        {
            self.bad += 1;
            tracing::warn!(
                seq = frame.seq,
                "bad frame: row {} col {} is {} but the pattern says {}",
                m.row,
                m.col,
                m.found,
                m.expected
            );
        }
        Ok(())
    }

    fn summary(&self) -> AlgorithmSummary {
        AlgorithmSummary {
            bad_frames: self.bad,
            last_value: None,
        }
    }
}

/// Simulates `ms` milliseconds of work per frame (sleeping, so it does not
/// steal CPU from other processes).
#[derive(Debug)]
pub struct Busy {
    work: Duration,
}

impl Busy {
    /// Work of `ms` milliseconds per frame.
    pub fn new(ms: f64) -> Self {
        Self {
            work: Duration::from_secs_f64(ms.max(0.0) / 1000.0),
        }
    }
}

impl Algorithm for Busy {
    fn name(&self) -> &str {
        "busy"
    }

    fn process(&mut self, _frame: &FrameView<'_>) -> Result<(), String> {
        std::thread::sleep(self.work);
        Ok(())
    }
}

/// Why an algorithm spec did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown algorithm {0:?}: use mean, verify or busy:MS (e.g. busy:5)")]
pub struct UnknownAlgorithm(pub String);

/// Builds a built-in algorithm from its spec: `mean`, `verify`, `busy:MS`.
pub fn builtin(spec: &str) -> Result<Box<dyn Algorithm + Send>, UnknownAlgorithm> {
    let err = || UnknownAlgorithm(spec.to_owned());
    match spec {
        "mean" => Ok(Box::new(Mean::default())),
        "verify" => Ok(Box::new(Verify::default())),
        _ => {
            let ms = spec.strip_prefix("busy:").ok_or_else(err)?;
            let ms: f64 = ms.parse().map_err(|_| err())?;
            if !(0.0..=60_000.0).contains(&ms) {
                return Err(err());
            }
            Ok(Box::new(Busy::new(ms)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(builtin("mean").unwrap().name(), "mean");
        assert_eq!(builtin("verify").unwrap().name(), "verify");
        assert_eq!(builtin("busy:2.5").unwrap().name(), "busy");
        for bad in ["", "busy", "busy:", "busy:-1", "busy:x", "median"] {
            assert!(builtin(bad).is_err(), "{bad}");
        }
    }
}
