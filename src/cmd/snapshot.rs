//! `framebus snapshot`: the newest frame (pinned while it is copied, or,
//! on a bus whose every consumer entry is taken, copied without an entry
//! and checked whole) or the debug BGR frame (a seqlock-consistent copy) as
//! a PNG, written with the pure-Rust `png` encoder so it works in every
//! build.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use framebus_consumer::{
    copy_latest_frame, read_bgr, Consumer, ConsumerConfig, ConsumerError, CopyError, FrameView,
};
use serde::Serialize;
use shm_layout::PixelFormat;

/// `framebus snapshot`.
#[derive(Debug, Args)]
#[command(
    after_help = "Prints one line on stdout: `seq=N width=W height=H file=PATH` (with --json, a JSON\nobject with seq, width, height, capture_ns, bgr, format, png_bits, file). With -o - the PNG itself goes\nto stdout and that line to stderr. The PNG also carries the frame's sequence\nnumber in a tEXt chunk `framebus-seq`. Only PNG is written: another extension is\nrefused.\n\nThe frame is written as the bus carries it: gray8 as 8-bit gray, gray16 as 16-bit\ngray (values unshifted: a 12-bit camera's are 0..4095; tEXt chunks framebus-format\nand framebus-significant-bits say so), bgr8 and rgb8 as RGB.\n\nThe frame is taken as a consumer would: it holds a consumer entry for an\ninstant and reads the frame pinned. On a full bus (every consumer entry taken)\nit works too: it then copies the newest frame without an entry, writing nothing\nto the bus, and keeps the copy only if the producer did not rewrite the slot\nmeanwhile (else it copies again); an info log line says so. The BGR frame needs a\nproducer started with --debug-bgr.\n\nExamples:\n  framebus snapshot --bus cam0 -o frame.png\n  framebus snapshot --bus cam0 -o colour.png --bgr\n  framebus snapshot --bus cam0 -o - | display -"
)]
pub struct SnapshotArgs {
    /// Bus name.
    #[arg(long)]
    pub bus: String,
    /// PNG file to write (its name must end in .png), or - for stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE.png|-")]
    pub output: PathBuf,
    /// Take the debug BGR frame (colour) instead of the gray one; needs a
    /// producer started with --debug-bgr.
    #[arg(long)]
    pub bgr: bool,
    /// Wait up to this many seconds for a frame.
    #[arg(long, default_value_t = 5.0, value_parser = crate::parse::parse_seconds)]
    pub timeout: f64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Written {
    seq: u64,
    width: u32,
    height: u32,
    capture_ns: u64,
    bgr: bool,
    /// The bus's pixel format (`bgr8` for the debug BGR slot).
    format: &'static str,
    /// Bits per PNG sample: 8, or 16 for gray16.
    png_bits: u8,
    file: String,
}

/// An image to encode: 8- or 16-bit gray, or RGB, rows packed (16-bit
/// samples big-endian, as PNG stores them).
struct Image {
    width: u32,
    height: u32,
    seq: u64,
    capture_ns: u64,
    format: PixelFormat,
    significant_bits: u8,
    color: png::ColorType,
    depth: png::BitDepth,
    data: Vec<u8>,
}

pub fn run(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let bus = super::bus_name(&args.bus)?;
    let to_stdout = is_stdout(&args.output)?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let image = if args.bgr {
        let frame = read_bgr(&bus, timeout)
            .with_context(|| format!("cannot take the BGR frame of bus {bus}"))?;
        // PNG stores R, G, B: swap B and R.
        let mut data = frame.pixels;
        for px in data.chunks_exact_mut(3) {
            px.swap(0, 2);
        }
        Image {
            width: frame.width,
            height: frame.height,
            seq: frame.seq,
            capture_ns: frame.capture_ns,
            format: PixelFormat::Bgr8,
            significant_bits: 8,
            color: png::ColorType::Rgb,
            depth: png::BitDepth::Eight,
            data,
        }
    } else {
        frame_image(&bus, timeout)?
    };
    if to_stdout {
        let mut png = Vec::new();
        encode_png(&mut png, &image).context("cannot encode the PNG")?;
        crate::out::write_all(&png)?;
    } else {
        write_png(&args.output, &image)?;
    }
    let written = Written {
        seq: image.seq,
        width: image.width,
        height: image.height,
        capture_ns: image.capture_ns,
        bgr: args.bgr,
        format: image.format.name(),
        png_bits: if image.depth == png::BitDepth::Sixteen {
            16
        } else {
            8
        },
        file: args.output.display().to_string(),
    };
    let line = if args.json {
        serde_json::to_string(&written)?
    } else {
        format!(
            "seq={} width={} height={} file={}",
            written.seq, written.width, written.height, written.file
        )
    };
    // With -o -, stdout is the PNG: the summary goes to stderr.
    if to_stdout {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `-o` names stdout (`-`); refuses a file name that does not end
/// in `.png`, since only PNG is written.
fn is_stdout(path: &Path) -> anyhow::Result<bool> {
    if path.as_os_str() == "-" {
        return Ok(true);
    }
    let png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !png {
        let got = match path.extension() {
            Some(e) => format!("a .{} file", e.to_string_lossy()),
            None => "a file without the .png extension".into(),
        };
        anyhow::bail!(
            "snapshot writes PNG only, but -o {} names {got}: name it FILE.png, or use -o - to write the PNG to stdout (convert it with another tool if you need another format)",
            path.display()
        );
    }
    Ok(false)
}

/// The newest frame, in PNG's sample layout. Taken as a consumer would
/// (attach, pin it, copy its rows while it is pinned, let go); if every
/// consumer entry is taken, copied without an entry instead
/// (`framebus_consumer::copy_latest_frame`, doc/PROTOCOL.md §19).
fn frame_image(bus: &shm_layout::BusName, timeout: Duration) -> anyhow::Result<Image> {
    let config = ConsumerConfig {
        name: "snapshot".into(),
        ..ConsumerConfig::new(bus.clone())
    };
    let mut consumer = match Consumer::attach(config) {
        Ok(c) => c,
        Err(ConsumerError::BusFull { max, .. }) => {
            tracing::info!(
                bus = %bus,
                "all {max} consumer entries are taken: copying the newest frame without an entry"
            );
            let frame = copy_latest_frame(bus, timeout).map_err(|e| match e {
                CopyError::Consumer(e) => super::attach_error(bus, e),
                e => anyhow::Error::new(e)
                    .context(format!("cannot copy the newest frame of bus {bus}")),
            })?;
            return image_of(bus, frame.view());
        }
        Err(e) => return Err(super::attach_error(bus, e)),
    };
    let frame = consumer
        .next_frame(Some(timeout))
        .with_context(|| format!("cannot take a frame from bus {bus}"))?
        .with_context(|| {
            format!(
                "bus {bus} published no frame within {:.1} s; is its producer stalled? (framebus inspect --bus {bus})",
                timeout.as_secs_f64()
            )
        })?;
    let image = image_of(bus, frame.view())?;
    if frame.truncated() {
        anyhow::bail!("bus {bus} was truncated while its frame was copied (another process shrank /dev/shm/framebus.{bus}); nothing written — try again once the producer has re-created it");
    }
    drop(frame); // releases the pin
    Ok(image)
}

/// `frame`'s rows without the stride padding, in PNG's sample layout: gray8
/// and gray16 become 8- and 16-bit grayscale (gray16 values as they are: a
/// 12-bit camera's 0..=4095, its significant bits in a tEXt chunk), bgr8
/// and rgb8 RGB.
fn image_of(bus: &shm_layout::BusName, frame: FrameView<'_>) -> anyhow::Result<Image> {
    let (h, format) = (frame.height, frame.format);
    let mut data = Vec::with_capacity(frame.row_bytes() * h as usize);
    let (color, depth) = match format {
        PixelFormat::Gray8 => {
            for y in 0..h {
                data.extend_from_slice(frame.row(y));
            }
            (png::ColorType::Grayscale, png::BitDepth::Eight)
        }
        PixelFormat::Gray16 => {
            let rows = frame
                .as_u16()
                .with_context(|| format!("cannot read the gray16 frame of bus {bus}"))?;
            for row in rows.iter() {
                data.extend(row.iter().flat_map(|v| v.to_be_bytes()));
            }
            (png::ColorType::Grayscale, png::BitDepth::Sixteen)
        }
        PixelFormat::Rgb8 | PixelFormat::Bgr8 => {
            for y in 0..h {
                data.extend_from_slice(frame.row(y));
            }
            if format == PixelFormat::Bgr8 {
                // PNG stores R, G, B: swap B and R.
                for px in data.chunks_exact_mut(3) {
                    px.swap(0, 2);
                }
            }
            (png::ColorType::Rgb, png::BitDepth::Eight)
        }
    };
    Ok(Image {
        width: frame.width,
        height: h,
        seq: frame.seq,
        capture_ns: frame.capture_ns,
        format,
        significant_bits: frame.significant_bits,
        color,
        depth,
        data,
    })
}

fn write_png(path: &Path, image: &Image) -> anyhow::Result<()> {
    let what = || format!("cannot write {}", path.display());
    // Written beside the target, then renamed over it: a failure leaves
    // neither a half-written PNG nor a damaged earlier file.
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let file = std::fs::File::create(&tmp).with_context(what)?;
    let done = encode_png(std::io::BufWriter::new(file), image)
        .map_err(anyhow::Error::new)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(anyhow::Error::new));
    done.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.context(what())
    })
}

/// Encodes `image` as a PNG with the frame's seq in a tEXt chunk.
fn encode_png(out: impl Write, image: &Image) -> Result<(), png::EncodingError> {
    let mut enc = png::Encoder::new(out, image.width, image.height);
    enc.set_color(image.color);
    enc.set_depth(image.depth);
    enc.add_text_chunk("framebus-seq".into(), image.seq.to_string())?;
    enc.add_text_chunk("framebus-format".into(), image.format.name().into())?;
    enc.add_text_chunk(
        "framebus-significant-bits".into(),
        image.significant_bits.to_string(),
    )?;
    let mut writer = enc.write_header()?;
    writer.write_image_data(&image.data)?;
    writer.finish()
}
