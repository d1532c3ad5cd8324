//! `framebus view`: a small HTTP server showing a bus's live picture in a
//! browser. It reads frames as an ordinary consumer with its own rate
//! limit (`--max-fps`, default 15), so it never slows the camera; each
//! frame taken is encoded once to JPEG and sent to every open MJPEG stream
//! (`multipart/x-mixed-replace`). The page beside the picture polls
//! `/stats.json`: the bus's and its consumers' figures, read from shared
//! memory.
//!
//! Routes: `/` the page, `/stream.mjpg` the MJPEG stream, `/frame.jpg` the
//! newest JPEG, `/stats.json` the figures; `?bgr=1` on the picture routes
//! gives the debug BGR frame when the producer writes one.

mod grab;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use shm_layout::BusName;

use grab::Latest;

/// The page, with `{{BUS}}` replaced by the bus name.
const PAGE: &str = include_str!("page.html");

/// `framebus view`.
#[derive(Debug, Args)]
#[command(
    after_help = "Prints `listening http://ADDR/ bus=NAME` on stdout once it serves (with --listen\n127.0.0.1:0, ADDR has the port the system chose), and a summary line when it\nstops (Ctrl-C). It listens on the loopback interface unless told otherwise: the\npicture is visible to whoever can reach the address.\n\nRoutes: / (the page), /stream.mjpg (MJPEG), /frame.jpg (the newest frame),\n/stats.json (bus and consumer figures); add ?bgr=1 for the debug BGR frame of a\nproducer started with --debug-bgr.\n\nExamples:\n  framebus view --bus cam0                          # open http://127.0.0.1:8080/\n  framebus view --bus cam0 --listen 127.0.0.1:9000 --max-fps 5\n  curl -s http://127.0.0.1:8080/frame.jpg -o frame.jpg"
)]
pub struct ViewArgs {
    /// Bus name.
    #[arg(long)]
    pub bus: String,
    /// Address to serve on; loopback by default (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Frames per second taken from the bus and streamed; 0 = no limit.
    #[arg(long, default_value_t = 15.0, value_parser = crate::parse::parse_max_fps)]
    pub max_fps: f64,
    /// JPEG quality, 1 (smallest) to 100 (best).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// Seconds to wait for the bus to appear (default: fail at once).
    #[arg(long, value_parser = crate::parse::parse_seconds)]
    pub wait: Option<f64>,
}

/// What the grabber and the HTTP threads share.
pub(crate) struct Shared {
    pub bus: BusName,
    pub max_fps: f64,
    pub latest: Mutex<Latest>,
    /// Notified at each new JPEG (and at stop).
    pub fresh: Condvar,
    pub stop: Arc<AtomicBool>,
}

pub fn run(args: ViewArgs) -> anyhow::Result<ExitCode> {
    let bus = super::bus_name(&args.bus)?;
    let stop = super::stop_flag()?;
    let limit = crate::parse::limit(Some(args.max_fps));
    let consumer = grab::attach(&bus, limit, args.wait.map(Duration::from_secs_f64))?;
    let server = tiny_http::Server::http(args.listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {}: {e}; choose another address with --listen (port 0: any free port)",
            args.listen
        )
    })?;
    let addr = server
        .server_addr()
        .to_ip()
        .context("the server has no IP address")?;
    if !addr.ip().is_loopback() {
        tracing::warn!("serving on {addr}: the picture is visible to every host that can reach it");
    }
    let shared = Arc::new(Shared {
        bus: bus.clone(),
        max_fps: limit.unwrap_or(0.0),
        latest: Mutex::new(Latest::default()),
        fresh: Condvar::new(),
        stop: Arc::clone(&stop),
    });
    let grabber = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("view-grab".into())
            .spawn(move || grab::run(consumer, &shared, args.quality))?
    };
    println!("listening http://{addr}/ bus={bus}");
    while !stop.load(Ordering::Relaxed) && !grabber.is_finished() {
        match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(req)) => {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    if let Err(e) = handle(req, &shared) {
                        tracing::debug!("request ended: {e}");
                    }
                });
            }
            Ok(None) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("the HTTP server failed")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    shared.fresh.notify_all();
    let grabbed = grabber
        .join()
        .map_err(|_| anyhow::anyhow!("the frame grabber panicked"))?;
    grabbed?;
    let l = lock(&shared.latest);
    println!(
        "view of bus {bus}: {} frames encoded, {:.1} ms per JPEG on average",
        l.frames,
        l.encode_ms_mean()
    );
    Ok(ExitCode::SUCCESS)
}

fn lock(m: &Mutex<Latest>) -> std::sync::MutexGuard<'_, Latest> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves one request.
fn handle(req: tiny_http::Request, shared: &Shared) -> std::io::Result<()> {
    let url = req.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let bgr = query.split('&').any(|kv| kv == "bgr=1");
    match path {
        "/" | "/index.html" => {
            let page = PAGE.replace("{{BUS}}", shared.bus.as_str());
            req.respond(with_type(
                tiny_http::Response::from_string(page),
                "text/html; charset=utf-8",
            ))
        }
        "/stats.json" => {
            let bus = super::live::read(&shared.bus).map(|s| super::live::bus_json(&s));
            let l = lock(&shared.latest);
            let v = json!({
                "bus": bus,
                "view": {
                    "frames": l.frames,
                    "seq": l.seq,
                    "max_fps": shared.max_fps,
                    "encode_ms_mean": l.encode_ms_mean(),
                    "bgr": l.bgr.is_some(),
                },
            });
            drop(l);
            req.respond(with_type(
                tiny_http::Response::from_string(v.to_string()),
                "application/json",
            ))
        }
        "/frame.jpg" => {
            let jpeg = lock(&shared.latest).jpeg(bgr);
            match jpeg {
                Some((_, data)) => req.respond(with_type(
                    tiny_http::Response::from_data(data.as_slice()),
                    "image/jpeg",
                )),
                None => req.respond(
                    tiny_http::Response::from_string("no frame yet: is the producer publishing?")
                        .with_status_code(503),
                ),
            }
        }
        "/stream.mjpg" => stream(req.into_writer(), shared, bgr),
        _ => req.respond(tiny_http::Response::from_string("not found").with_status_code(404)),
    }
}

fn with_type<R: std::io::Read>(r: tiny_http::Response<R>, mime: &str) -> tiny_http::Response<R> {
    let h = tiny_http::Header::from_bytes("Content-Type", mime).expect("a valid header");
    r.with_header(h)
}

/// Boundary of the MJPEG stream's parts.
const BOUNDARY: &str = "framebus-frame";

/// Writes the MJPEG stream: each new JPEG as one part, until the client
/// goes or the server stops. Each part carries `X-Framebus-Seq`.
fn stream(mut out: Box<dyn Write + Send>, shared: &Shared, bgr: bool) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\nCache-Control: no-cache, no-store\r\nConnection: close\r\n\r\n"
    )?;
    out.flush()?;
    let mut sent = 0u64;
    loop {
        let next = {
            let mut l = lock(&shared.latest);
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                match l.jpeg(bgr) {
                    Some((seq, data)) if seq != sent => break (seq, data),
                    _ => {}
                }
                l = shared
                    .fresh
                    .wait_timeout(l, Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        };
        let (seq, data) = next;
        write!(
            out,
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Framebus-Seq: {seq}\r\n\r\n",
            data.len()
        )?;
        out.write_all(&data)?;
        out.write_all(b"\r\n")?;
        out.flush()?;
        sent = seq;
    }
}
