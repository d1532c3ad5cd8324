//! The view's frame grabber: an ordinary consumer with its own rate limit
//! that encodes each frame it takes to JPEG once, for every client.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use framebus_consumer::{read_bgr, BgrError, Consumer, ConsumerConfig};
use jpeg_encoder::{ColorType, Encoder};
use shm_layout::BusName;

use super::{lock, Shared};

/// The newest JPEGs and the grabber's figures.
#[derive(Default)]
pub(crate) struct Latest {
    /// Sequence number of the newest gray frame encoded (0 = none).
    pub seq: u64,
    /// The newest gray frame as JPEG.
    pub gray: Option<Arc<Vec<u8>>>,
    /// The newest debug BGR frame as JPEG (`None`: the bus has none).
    pub bgr: Option<(u64, Arc<Vec<u8>>)>,
    /// Frames encoded (gray).
    pub frames: u64,
    /// Time spent copying and encoding them, nanoseconds.
    pub encode_ns: u64,
}

impl Latest {
    /// The newest JPEG of the gray or the BGR frame, with its seq.
    pub fn jpeg(&self, bgr: bool) -> Option<(u64, Arc<Vec<u8>>)> {
        if bgr {
            self.bgr.clone()
        } else {
            self.gray.clone().map(|g| (self.seq, g))
        }
    }

    /// Mean milliseconds per gray JPEG (copy and encode).
    pub fn encode_ms_mean(&self) -> f64 {
        if self.frames == 0 {
            0.0
        } else {
            self.encode_ns as f64 / self.frames as f64 / 1e6
        }
    }
}

/// Attaches the view's consumer (named `view`).
pub(crate) fn attach(
    bus: &BusName,
    max_fps: Option<f64>,
    wait: Option<Duration>,
) -> anyhow::Result<Consumer> {
    let config = ConsumerConfig {
        name: "view".into(),
        max_fps,
        ..ConsumerConfig::new(bus.clone())
    };
    let c = match wait {
        None => Consumer::attach(config),
        Some(w) => Consumer::attach_wait(config, w),
    };
    c.map_err(|e| super::super::attach_error(bus, e))
}

/// Takes frames until stopped; encodes each to JPEG and wakes the streams.
pub(crate) fn run(mut consumer: Consumer, shared: &Shared, quality: u8) -> anyhow::Result<()> {
    let mut gray = Vec::new();
    let mut bgr_enabled = true;
    while !shared.stop.load(Ordering::Relaxed) {
        let frame = match consumer.next_frame(Some(Duration::from_millis(100))) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(e) if e.is_transient() => continue,
            Err(framebus_consumer::ConsumerError::BusTruncated { .. }) => continue,
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("the view lost bus {}", shared.bus))
                )
            }
        };
        let start = Instant::now();
        let (w, h, seq) = (frame.width(), frame.height(), frame.seq());
        // Gray8 rows as they are; every other format (gray16, colour) as RGB.
        let color = if frame.format() == shm_layout::PixelFormat::Gray8 {
            gray.clear();
            for y in 0..h {
                gray.extend_from_slice(frame.row(y));
            }
            ColorType::Luma
        } else {
            gray = frame.to_rgb();
            ColorType::Rgb
        };
        drop(frame); // the pin is let go before the (slower) encoding
        let jpeg = encode(&gray, w, h, color, quality)?;
        let encode_ns = start.elapsed().as_nanos() as u64;
        let bgr = if bgr_enabled {
            match read_bgr(&shared.bus, Duration::ZERO) {
                Ok(f) => Some((
                    f.seq,
                    Arc::new(encode(
                        &f.pixels,
                        f.width,
                        f.height,
                        ColorType::Bgr,
                        quality,
                    )?),
                )),
                Err(BgrError::NotEnabled { .. }) => {
                    bgr_enabled = false;
                    None
                }
                Err(e) => {
                    tracing::debug!("no BGR frame this time: {e}");
                    None
                }
            }
        } else {
            None
        };
        let mut l = lock(&shared.latest);
        l.seq = seq;
        l.gray = Some(Arc::new(jpeg));
        if bgr.is_some() {
            l.bgr = bgr;
        }
        l.frames += 1;
        l.encode_ns += encode_ns;
        drop(l);
        shared.fresh.notify_all();
    }
    Ok(())
}

/// Encodes packed pixels (`w * h` of `color`) to a JPEG.
fn encode(px: &[u8], w: u32, h: u32, color: ColorType, quality: u8) -> anyhow::Result<Vec<u8>> {
    let too_big = || anyhow::anyhow!("a {w}x{h} frame is too large for JPEG (65535 at most)");
    let (w16, h16) = (
        u16::try_from(w).map_err(|_| too_big())?,
        u16::try_from(h).map_err(|_| too_big())?,
    );
    let mut out = Vec::with_capacity(px.len() / 8);
    Encoder::new(&mut out, quality)
        .encode(px, w16, h16, color)
        .map_err(|e| anyhow::anyhow!("cannot encode a JPEG: {e}"))?;
    Ok(out)
}
