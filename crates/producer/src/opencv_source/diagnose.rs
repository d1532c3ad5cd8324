//! What a file or camera device is, and why it does not open, in words for
//! the error a user reads: the kind of media file by its first bytes, the
//! cameras there are, and who holds a busy camera. The device checks read
//! Linux's `/dev/video*` and `/proc`; elsewhere they say less.

use std::path::Path;

/// Whether `meta` is a device or a pipe (not a file a video can be read
/// from without blocking or consuming it).
pub(super) fn is_device_or_pipe(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        t.is_fifo() || t.is_char_device() || t.is_block_device() || t.is_socket()
    }
    #[cfg(not(unix))]
    {
        !meta.is_file() && !meta.is_dir()
    }
}

/// What kind of media file `head` (its first bytes) starts like, in words,
/// or `None` if none known.
pub(super) fn media_kind(head: &[u8]) -> Option<&'static str> {
    let at = |off: usize, sig: &[u8]| head.get(off..off + sig.len()) == Some(sig);
    Some(match () {
        _ if at(0, b"RIFF") && at(8, b"WAVE") => "a WAV audio file",
        _ if at(0, b"RIFF") && at(8, b"AVI ") => "an AVI file",
        _ if at(0, b"RIFF") => "a RIFF file",
        _ if at(4, b"ftyp") => "an MP4/QuickTime file",
        _ if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) => "a Matroska/WebM file",
        _ if at(0, b"OggS") => "an Ogg file",
        _ if at(0, b"fLaC") => "a FLAC audio file",
        _ if at(0, b"ID3") || at(0, &[0xFF, 0xFB]) || at(0, &[0xFF, 0xF3]) => "an MP3 audio file",
        _ if at(0, b"FLV") => "an FLV file",
        _ if at(0, &[0x00, 0x00, 0x01, 0xBA]) => "an MPEG program stream",
        _ => return None,
    })
}

#[cfg(target_os = "linux")]
/// The cameras there are, in words, for the "no such camera" error.
pub(super) fn available_cameras() -> String {
    let mut found: Vec<u32> = std::fs::read_dir("/dev")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("video")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    found.sort_unstable();
    match found.as_slice() {
        [] => "this machine has no /dev/video* device at all".into(),
        list => format!(
            "cameras here: {}",
            list.iter()
                .map(|i| format!("camera:{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The cameras there are: not listed on this OS.
#[cfg(not(target_os = "linux"))]
pub(super) fn available_cameras() -> String {
    "cameras are numbered from 0 in the order the system lists them".into()
}

#[cfg(target_os = "linux")]
/// Why an existing camera device did not open, as far as can be told.
pub(super) fn diagnose_camera(path: &str) -> String {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    let flags = OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::open(path, flags, Mode::empty()) {
        Err(Errno::ACCESS | Errno::PERM) => {
            "permission denied: add your user to the `video` group (sudo usermod -aG video $USER, then log in again)".into()
        }
        Err(Errno::BUSY) => holders_or(path, "it is busy: another program is using it"),
        Err(e) => format!("it cannot be opened: {e}"),
        Ok(_fd) => holders_or(
            path,
            "OpenCV could not start capturing: it is busy (another program is streaming from it) or not a capture device (try another index)",
        ),
    }
}

/// Why a camera did not open: not known on this OS beyond OpenCV's word.
#[cfg(not(target_os = "linux"))]
pub(super) fn diagnose_camera(_path: &str) -> String {
    "OpenCV could not open it: another program may be using it, or there is no such camera".into()
}

#[cfg(target_os = "linux")]
/// "busy: in use by process 123 (name)" if another process has `path`
/// open, else `otherwise`.
pub(super) fn holders_or(path: &str, otherwise: &str) -> String {
    let me = std::process::id();
    let mut holders = Vec::new();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.filter_map(Result::ok) {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            let uses = fds
                .filter_map(Result::ok)
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == Path::new(path)));
            if uses {
                let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                holders.push(format!("process {pid} ({})", comm.trim()));
            }
        }
    }
    if holders.is_empty() {
        otherwise.to_owned()
    } else {
        format!(
            "it is busy: in use by {}; stop it or pick another camera",
            holders.join(", ")
        )
    }
}

/// Who holds a camera: not known on this OS.
#[cfg(not(target_os = "linux"))]
pub(super) fn holders_or(_path: &str, otherwise: &str) -> String {
    otherwise.to_owned()
}
