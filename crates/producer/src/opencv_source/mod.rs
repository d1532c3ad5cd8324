//! [`OpenCvSource`]: frames from an OpenCV `VideoCapture` — a camera or a
//! video file — converted to the bus's pixel format straight into the slot
//! (only with the `opencv` feature; see doc/CAMERA.md): gray8 by
//! `cvtColor(BGR→GRAY)`, bgr8 by a copy, rgb8 by `cvtColor(BGR→RGB)`, and
//! gray16 from captures that deliver 16-bit gray (`CV_16UC1`) by a copy,
//! values unchanged (a camera is asked for unconverted Y16 first); an 8-bit
//! capture into a gray16 bus is refused with the reason.
//!
//! Per frame: `VideoCapture::read` decodes into a BGR `Mat` the source
//! owns (reused from frame to frame); `cvtColor(BGR→GRAY)` writes into a
//! `Mat` header laid over the pinned-for-write slot itself (its row step is
//! the slot's stride), so there is no intermediate gray buffer; with
//! `--debug-bgr` the BGR frame is also copied into the debug BGR slot under
//! its seqlock. OpenCV silently reallocates a destination of the wrong size
//! or type, so after the call the destination's data pointer is checked to
//! still be the slot's.

use std::path::{Path, PathBuf};

use opencv::core::{Mat, CV_16UC1, CV_8UC1, CV_8UC3, CV_8UC4};
use opencv::imgproc;
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};
use shm_layout::PixelFormat;

mod diagnose;

use diagnose::{available_cameras, diagnose_camera, holders_or, is_device_or_pipe, media_kind};

use crate::source::{Captured, FrameSource, SlotWriter, SourceError, SourceTimings};
use crate::sys;

/// What to ask a camera for. The camera may deliver something else: the
/// bus takes the geometry of the frames it really delivers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CameraRequest {
    /// Width and height to request.
    pub size: Option<(u32, u32)>,
    /// Frame rate to request.
    pub fps: Option<f64>,
}

enum Kind {
    Camera { index: u32 },
    Video { path: PathBuf, looping: bool },
}

/// A camera or video file read through OpenCV.
pub struct OpenCvSource {
    cap: VideoCapture,
    kind: Kind,
    width: u32,
    height: u32,
    native_fps: Option<f64>,
    /// The frame being converted (reused; OpenCV decodes into it).
    frame: Mat,
    /// A scratch BGR frame for sources that deliver gray or BGRA.
    bgr_scratch: Mat,
    /// `frame` holds a frame not yet written: the first one (read at open
    /// to learn the real geometry) or one of a new geometry.
    pending: Option<u64>,
    /// Frames read since the file was (re)started, to refuse looping a
    /// file that has none.
    frames_this_pass: u64,
    /// A camera was asked for unconverted 16-bit gray (a gray16 bus; see
    /// [`OpenCvSource::ask_camera_for_16_bit`]).
    asked_for_16_bit: bool,
    timings: SourceTimings,
}

fn cv_err(what: &str) -> impl FnOnce(opencv::Error) -> SourceError + '_ {
    move |e| SourceError::Failed(format!("{what}: OpenCV: {e}"))
}

/// Quiets OpenCV's own warnings (it prints one for every failed open);
/// framebus reports those failures itself. `OPENCV_LOG_LEVEL` still wins.
fn quiet_opencv_logs() {
    if std::env::var_os("OPENCV_LOG_LEVEL").is_none() {
        let _ = opencv::core::set_log_level(opencv::core::LogLevel::LOG_LEVEL_ERROR);
    }
}

fn frame_size(m: &Mat) -> Option<(u32, u32)> {
    let (w, h) = (u32::try_from(m.cols()).ok()?, u32::try_from(m.rows()).ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

impl OpenCvSource {
    /// Opens camera `index` (`/dev/video<index>` on Linux), asks it for
    /// `request`, and reads one frame to learn what it really delivers.
    pub fn open_camera(index: u32, request: CameraRequest) -> Result<Self, SourceError> {
        quiet_opencv_logs();
        let path = format!("/dev/video{index}");
        if cfg!(target_os = "linux") && std::fs::metadata(&path).is_err() {
            return Err(SourceError::NoCamera {
                index,
                available: available_cameras(),
            });
        }
        let unavailable = |why: String| SourceError::CameraUnavailable {
            index,
            path: path.clone(),
            why,
        };
        let cam_index =
            i32::try_from(index).map_err(|_| unavailable("index out of range".into()))?;
        let mut cap = match VideoCapture::new(cam_index, videoio::CAP_ANY) {
            Ok(cap) if cap.is_opened().unwrap_or(false) => cap,
            Ok(_) => return Err(unavailable(diagnose_camera(&path))),
            Err(e) => {
                return Err(unavailable(format!(
                    "{} (OpenCV: {e})",
                    diagnose_camera(&path)
                )))
            }
        };
        if let Some((w, h)) = request.size {
            let _ = cap.set(videoio::CAP_PROP_FRAME_WIDTH, f64::from(w));
            let _ = cap.set(videoio::CAP_PROP_FRAME_HEIGHT, f64::from(h));
        }
        if let Some(fps) = request.fps.filter(|f| *f > 0.0) {
            let _ = cap.set(videoio::CAP_PROP_FPS, fps);
        }
        let mut frame = Mat::default();
        let got = cap.read(&mut frame).unwrap_or(false);
        let Some((width, height)) = got.then(|| frame_size(&frame)).flatten() else {
            return Err(unavailable(format!(
                "it opened but delivered no frame: {}",
                holders_or(&path, "another program may be streaming from it, or it is not a capture device (try another index)")
            )));
        };
        let native_fps = cap
            .get(videoio::CAP_PROP_FPS)
            .ok()
            .filter(|f| f.is_finite() && *f > 0.0);
        if request.size.is_some_and(|s| s != (width, height)) {
            tracing::warn!(camera = index, requested = ?request.size, delivered = %format!("{width}x{height}"), "the camera does not deliver the requested size; the bus takes what it delivers");
        }
        tracing::info!(camera = index, width, height, fps = ?native_fps, backend = %cap.get_backend_name().unwrap_or_default(), "camera opened");
        Ok(Self::new(
            cap,
            Kind::Camera { index },
            width,
            height,
            native_fps,
            frame,
        ))
    }

    /// Opens a video file any OpenCV backend can decode, and reads its
    /// first frame to learn its geometry. With `looping`, it starts over at
    /// the end instead of ending.
    pub fn open_video(path: &Path, looping: bool) -> Result<Self, SourceError> {
        quiet_opencv_logs();
        let unreadable = |why: String| SourceError::VideoUnreadable {
            path: path.to_owned(),
            why,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(unreadable(
                    "no such file: check the path after video:".into(),
                ))
            }
            Err(e) => return Err(unreadable(e.to_string())),
        };
        if meta.is_dir() {
            return Err(unreadable("it is a directory, not a video file".into()));
        }
        if is_device_or_pipe(&meta) {
            return Err(unreadable("it is not a regular file".into()));
        }
        let mut head = [0u8; 16];
        let head_len = {
            use std::io::Read;
            let mut f = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
            f.read(&mut head).map_err(|e| unreadable(e.to_string()))?
        };
        if head_len == 0 {
            return Err(unreadable("the file is empty".into()));
        }
        // No video came out of it: a known media file without a video
        // stream OpenCV decodes, or not a media file at all.
        let no_video = |if_media: &str, otherwise: &str| match media_kind(&head[..head_len]) {
            Some(kind) => SourceError::NoVideoStream {
                path: path.to_owned(),
                why: format!("it is {kind}, but OpenCV {if_media}"),
            },
            None => unreadable(otherwise.into()),
        };
        let Some(mut cap) = open_file(path) else {
            return Err(no_video(
                "found no video stream in it that it can decode (an audio-only file, or a codec this OpenCV build lacks)",
                "OpenCV cannot decode it: it is not a video file (or of a format no OpenCV backend here knows)",
            ));
        };
        let mut frame = Mat::default();
        let got = cap.read(&mut frame).unwrap_or(false);
        let Some((width, height)) = got.then(|| frame_size(&frame)).flatten() else {
            return Err(no_video(
                "decoded no video frame from it",
                "OpenCV opened it but decoded no video frame from it",
            ));
        };
        let native_fps = cap
            .get(videoio::CAP_PROP_FPS)
            .ok()
            .filter(|f| f.is_finite() && *f > 0.0 && *f <= 10_000.0);
        tracing::info!(path = %path.display(), width, height, fps = ?native_fps, backend = %cap.get_backend_name().unwrap_or_default(), "video opened");
        let kind = Kind::Video {
            path: path.to_owned(),
            looping,
        };
        Ok(Self::new(cap, kind, width, height, native_fps, frame))
    }

    fn new(
        cap: VideoCapture,
        kind: Kind,
        width: u32,
        height: u32,
        native_fps: Option<f64>,
        frame: Mat,
    ) -> Self {
        Self {
            cap,
            kind,
            width,
            height,
            native_fps,
            frame,
            bgr_scratch: Mat::default(),
            pending: Some(sys::monotonic_ns()),
            frames_this_pass: 1,
            asked_for_16_bit: false,
            timings: SourceTimings::default(),
        }
    }

    /// A camera feeding a gray16 bus. OpenCV converts every camera frame to
    /// 8-bit BGR unless `CAP_PROP_CONVERT_RGB` is off (its V4L2 backend
    /// turns a Y16 frame into its high byte, the low 8 bits lost), and its
    /// V4L2 backend picks an 8-bit pixel format before Y16 when a camera
    /// has both. So, the first time a camera's frame meets a gray16 slot and
    /// is not 16-bit, the camera is asked for Y16 and OpenCV for unconverted
    /// frames, and a new frame is read: it must be 16-bit gray (`CV_16UC1`,
    /// which the V4L2 backend delivers unconverted for Y16 and Y10), else
    /// the camera has no 16-bit gray mode and that is the error. Unconverted
    /// frames of any other pixel format are raw buffers (YUYV pairs, JPEG
    /// bytes), never written into a slot. Not done for video files: their
    /// backends decode to 8-bit BGR either way (FFmpeg's stops reading).
    fn ask_camera_for_16_bit(&mut self, index: u32) -> Result<(), SourceError> {
        self.asked_for_16_bit = true;
        let unconverted = self
            .cap
            .set(videoio::CAP_PROP_CONVERT_RGB, 0.0)
            .unwrap_or(false);
        if let Ok(y16) = videoio::VideoWriter::fourcc('Y', '1', '6', ' ') {
            // A request: a camera without Y16 keeps its pixel format.
            let _ = self.cap.set(videoio::CAP_PROP_FOURCC, f64::from(y16));
        }
        if !read_frame(&mut self.cap, &mut self.frame) {
            return Err(SourceError::Failed(format!(
                "camera {index} delivered no frame once asked for unconverted 16-bit gray (for the gray16 bus); use --format gray8 for this camera"
            )));
        }
        let t = self.frame.typ();
        if t != CV_16UC1 {
            let fourcc = self
                .cap
                .get(videoio::CAP_PROP_FOURCC)
                .map(|f| fourcc_name(f as u32))
                .unwrap_or_default();
            let how = if unconverted {
                "unconverted"
            } else {
                "its OpenCV backend cannot deliver unconverted frames:"
            };
            return Err(SourceError::Failed(format!(
                "camera {index} delivers no 16-bit gray ({how} pixel format '{fourcc}', OpenCV type {t}): a gray16 bus needs a camera with a 16-bit gray mode (V4L2 Y16 or Y10); use --format gray8 for this camera"
            )));
        }
        tracing::info!(
            camera = index,
            width = self.frame.cols(),
            height = self.frame.rows(),
            "camera delivers unconverted 16-bit gray for the gray16 bus"
        );
        Ok(())
    }

    /// Reads the next frame into `self.frame`; at the end of a looping
    /// file, starts over.
    fn read_next(&mut self) -> Result<(), SourceError> {
        if read_frame(&mut self.cap, &mut self.frame) {
            self.frames_this_pass += 1;
            return Ok(());
        }
        match &self.kind {
            Kind::Camera { index } => Err(SourceError::Failed(format!(
                "camera {index} stopped delivering frames (unplugged, or taken by another program)"
            ))),
            Kind::Video { looping: false, .. } => Err(SourceError::Ended),
            Kind::Video {
                path,
                looping: true,
            } => {
                if self.frames_this_pass == 0 {
                    return Err(SourceError::Failed(format!(
                        "video file {} has no frame to loop over",
                        path.display()
                    )));
                }
                self.frames_this_pass = 0;
                // Seek back; some backends cannot, so re-open if it fails.
                let rewound = self
                    .cap
                    .set(videoio::CAP_PROP_POS_FRAMES, 0.0)
                    .unwrap_or(false)
                    && read_frame(&mut self.cap, &mut self.frame);
                if !rewound {
                    let path = path.clone();
                    self.cap = open_file(&path).ok_or_else(|| {
                        SourceError::Failed(format!(
                            "cannot re-open video file {} to loop it",
                            path.display()
                        ))
                    })?;
                    if !read_frame(&mut self.cap, &mut self.frame) {
                        return Err(SourceError::Failed(format!(
                            "video file {} cannot be read again from its start to loop it",
                            path.display()
                        )));
                    }
                }
                self.frames_this_pass = 1;
                Ok(())
            }
        }
    }

    /// Converts `self.frame` to the slot's format into the slot: a `Mat`
    /// header over the slot's memory is cvtColor's (or copyTo's)
    /// destination.
    fn convert_into(&mut self, slot: &mut SlotWriter<'_>) -> Result<(), SourceError> {
        let (w, h, stride) = (slot.width(), slot.height(), slot.stride() as usize);
        let (format, row_bytes) = (slot.format(), slot.row_bytes());
        let src_type = self.frame.typ();
        let (dst_type, code) = match (format, src_type) {
            (PixelFormat::Gray8, t) if t == CV_8UC3 => (CV_8UC1, Some(imgproc::COLOR_BGR2GRAY)),
            (PixelFormat::Gray8, t) if t == CV_8UC4 => (CV_8UC1, Some(imgproc::COLOR_BGRA2GRAY)),
            (PixelFormat::Gray8, t) if t == CV_8UC1 => (CV_8UC1, None),
            (PixelFormat::Bgr8, t) if t == CV_8UC3 => (CV_8UC3, None),
            (PixelFormat::Bgr8, t) if t == CV_8UC4 => (CV_8UC3, Some(imgproc::COLOR_BGRA2BGR)),
            (PixelFormat::Bgr8, t) if t == CV_8UC1 => (CV_8UC3, Some(imgproc::COLOR_GRAY2BGR)),
            (PixelFormat::Rgb8, t) if t == CV_8UC3 => (CV_8UC3, Some(imgproc::COLOR_BGR2RGB)),
            (PixelFormat::Rgb8, t) if t == CV_8UC4 => (CV_8UC3, Some(imgproc::COLOR_BGRA2RGB)),
            (PixelFormat::Rgb8, t) if t == CV_8UC1 => (CV_8UC3, Some(imgproc::COLOR_GRAY2RGB)),
            (PixelFormat::Gray16, t) if t == CV_16UC1 => (CV_16UC1, None),
            (PixelFormat::Gray16, t) if t == CV_8UC1 || t == CV_8UC3 || t == CV_8UC4 => {
                return Err(SourceError::Failed(format!(
                    "the source delivers 8-bit frames (OpenCV type {t}), but the bus is gray16: a gray16 bus needs a capture that delivers 16-bit gray (CV_16UC1); use --format gray8 for this source"
                )))
            }
            (_, t) => {
                return Err(SourceError::Failed(format!(
                    "the source delivers frames of OpenCV type {t}, not 8-bit BGR, BGRA or gray (or 16-bit gray for a gray16 bus)"
                )))
            }
        };
        let data = slot.data();
        let needed = stride * (h as usize - 1) + row_bytes;
        if data.len() < needed || stride < row_bytes {
            return Err(SourceError::Failed(format!(
                "slot of {} bytes with stride {stride} cannot hold {w}x{h}",
                data.len()
            )));
        }
        let ptr = data.as_mut_ptr();
        // SAFETY: the header describes `h` rows of `w` pixels of
        // `dst_type` — `row_bytes` = w * bytes per pixel of the slot's
        // format, which `dst_type` matches (1, 3 or 2 bytes) — `stride`
        // bytes apart, starting at `ptr`: stride * (h - 1) + row_bytes <=
        // data.len() (checked above), so every byte OpenCV may touch is
        // inside the slot, which `slot` borrows mutably (the producer holds
        // its writer bit) for longer than `dst` lives; the slot is
        // page-aligned and a gray16 stride even, so 16-bit rows are
        // aligned; the Mat does not own or free external data.
        let mut dst = unsafe {
            Mat::new_rows_cols_with_data_unsafe(h as i32, w as i32, dst_type, ptr.cast(), stride)
        }
        .map_err(cv_err("cannot wrap the slot in a Mat"))?;
        match code {
            Some(code) => imgproc::cvt_color(&self.frame, &mut dst, code, 0),
            None => self.frame.copy_to(&mut dst),
        }
        .map_err(cv_err("cannot convert the frame into the slot"))?;
        // OpenCV reallocates a destination whose size or type does not
        // match instead of failing: then the slot was not written.
        if dst.data() != ptr.cast_const() || dst.rows() != h as i32 || dst.cols() != w as i32 {
            return Err(SourceError::Failed(format!(
                "OpenCV wrote the {format} frame into its own buffer instead of the slot ({}x{} type {} into {w}x{h}): this is a framebus bug, please report it",
                self.frame.cols(),
                self.frame.rows(),
                self.frame.typ()
            )));
        }
        Ok(())
    }

    /// Copies the colour frame into the debug BGR slot, if the bus has one.
    fn write_bgr(&mut self, slot: &mut SlotWriter<'_>, capture_ns: u64) -> Result<(), SourceError> {
        let bits = slot.significant_bits();
        let Some(bgr) = slot.debug_bgr() else {
            return Ok(());
        };
        let mut frame = &self.frame;
        // A 16-bit gray frame is shown in the 8-bit debug slot as consumers'
        // `to_rgb` shows it: its top 8 significant bits, `v >> (bits - 8)`
        // saturated at 255 (a 12-bit camera's 0..=4095 as 0..=255).
        let narrowed;
        if self.frame.typ() == CV_16UC1 {
            narrowed = narrow_16_bit(&self.frame, bits)?;
            frame = &narrowed;
        }
        let code = match frame.typ() {
            t if t == CV_8UC1 => Some(imgproc::COLOR_GRAY2BGR),
            t if t == CV_8UC4 => Some(imgproc::COLOR_BGRA2BGR),
            _ => None,
        };
        if let Some(code) = code {
            imgproc::cvt_color(frame, &mut self.bgr_scratch, code, 0)
                .map_err(cv_err("cannot convert the frame to BGR"))?;
            frame = &self.bgr_scratch;
        }
        let owned;
        if !frame.is_continuous() {
            owned = frame
                .try_clone()
                .map_err(cv_err("cannot copy the BGR frame"))?;
            frame = &owned;
        }
        let bytes = frame
            .data_bytes()
            .map_err(cv_err("cannot read the BGR frame"))?;
        bgr.write(bytes, 3 * self.width as usize, capture_ns)
    }
}

impl FrameSource for OpenCvSource {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn native_fps(&self) -> Option<f64> {
        self.native_fps
    }

    fn fill(&mut self, _seq: u64, slot: &mut SlotWriter<'_>) -> Result<Captured, SourceError> {
        let t0 = sys::monotonic_ns();
        let capture_ns = match self.pending.take() {
            Some(ns) => ns,
            None => {
                self.read_next()?;
                sys::monotonic_ns()
            }
        };
        let capture_ns = match self.kind {
            Kind::Camera { index }
                if slot.format() == PixelFormat::Gray16
                    && !self.asked_for_16_bit
                    && self.frame.typ() != CV_16UC1 =>
            {
                self.ask_camera_for_16_bit(index)?;
                sys::monotonic_ns()
            }
            _ => capture_ns,
        };
        let t1 = sys::monotonic_ns();
        let Some((w, h)) = frame_size(&self.frame) else {
            return Err(SourceError::Failed(
                "the source delivered an empty frame".into(),
            ));
        };
        if (w, h) != (self.width, self.height) || (w, h) != (slot.width(), slot.height()) {
            // Keep the frame for the bus of the new size: it is written
            // there, never into a slot of the old geometry.
            self.width = w;
            self.height = h;
            self.pending = Some(capture_ns);
            return Err(SourceError::GeometryChanged {
                width: w,
                height: h,
            });
        }
        let t2 = sys::monotonic_ns();
        self.convert_into(slot)?;
        let t3 = sys::monotonic_ns();
        self.write_bgr(slot, capture_ns)?;
        let t4 = sys::monotonic_ns();
        self.timings.frames += 1;
        self.timings.decode_ns_total += t1 - t0;
        self.timings.convert_ns_total += t3 - t2;
        self.timings.bgr_ns_total += t4 - t3;
        Ok(Captured { capture_ns })
    }

    fn timings(&self) -> SourceTimings {
        self.timings
    }
}

/// A `CV_16UC1` frame of `significant_bits` (0 = 16) as an 8-bit gray
/// `Mat`: each value shifted right by `bits - 8` (bits clamped to 8..=16),
/// saturated at 255 — the mapping of `FrameView::to_rgb`.
fn narrow_16_bit(frame: &Mat, significant_bits: u8) -> Result<Mat, SourceError> {
    let bits = match significant_bits {
        0 => 16,
        b => b.clamp(8, 16),
    };
    let shift = u32::from(bits - 8);
    let mut out = Mat::new_rows_cols_with_default(
        frame.rows(),
        frame.cols(),
        CV_8UC1,
        opencv::core::Scalar::all(0.0),
    )
    .map_err(cv_err("cannot narrow the 16-bit frame for the BGR slot"))?;
    for y in 0..frame.rows() {
        let src = frame
            .at_row::<u16>(y)
            .map_err(cv_err("cannot read the 16-bit frame"))?;
        let dst = out
            .at_row_mut::<u8>(y)
            .map_err(cv_err("cannot narrow the 16-bit frame for the BGR slot"))?;
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = (v >> shift).min(255) as u8;
        }
    }
    Ok(out)
}

/// A FOURCC code as its four characters (`YUYV`, `MJPG`, `Y16 `).
fn fourcc_name(code: u32) -> String {
    code.to_le_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Reads the next frame into `frame`: whether there was one.
fn read_frame(cap: &mut VideoCapture, frame: &mut Mat) -> bool {
    cap.read(frame).unwrap_or(false) && !frame.empty()
}

/// Opens a video file with the first backend that takes it: FFmpeg, then
/// OpenCV's own MJPEG reader (no FFmpeg needed for .avi MJPEG), then any
/// other (GStreamer...). OpenCV's logging is silenced meanwhile: every
/// backend that refuses the file would log an error.
fn open_file(path: &Path) -> Option<VideoCapture> {
    use opencv::core::{get_log_level, set_log_level, LogLevel};
    let level = get_log_level().ok();
    if std::env::var_os("OPENCV_LOG_LEVEL").is_none() {
        let _ = set_log_level(LogLevel::LOG_LEVEL_SILENT);
    }
    let cap = [
        videoio::CAP_FFMPEG,
        videoio::CAP_OPENCV_MJPEG,
        videoio::CAP_ANY,
    ]
    .into_iter()
    .find_map(|api| {
        VideoCapture::from_file(path, api)
            .ok()
            .filter(|c| c.is_opened().unwrap_or(false))
    });
    if let Some(level) = level {
        let _ = set_log_level(level);
    }
    cap
}
