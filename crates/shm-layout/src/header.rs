//! The header at offset 0 of every bus: a fixed part written once by the
//! producer before it publishes the magic, and dynamic parts made only of
//! atomics. Byte offsets are documented in `doc/LAYOUT.md` and pinned by the
//! `const` assertions at the end of this file.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// `b"FRAMEBUS"` read as a little-endian `u64`; written last, with Release.
pub const MAGIC: u64 = u64::from_le_bytes(*b"FRAMEBUS");
/// The layout version this build reads and writes.
pub const LAYOUT_VERSION: u32 = 2;
/// Bytes of the header proper (fixed + dynamic + BGR seqlock); the header
/// section is padded to [`PAGE`].
pub const HEADER_SIZE: u32 = 256;
/// Section alignment; every section offset is a multiple of it.
pub const PAGE: u64 = 4096;
/// Size of one slot-table entry (a consumer-table entry is
/// [`crate::tables::CONSUMER_ENTRY_SIZE`]).
pub const ENTRY_SIZE: u64 = 64;
/// Pixel format code of 8-bit grayscale, one byte per pixel
/// ([`crate::format::PixelFormat::Gray8`]).
pub const PIXEL_FORMAT_GRAY8: u32 = 1;
/// Pixel format code of 16-bit little-endian grayscale
/// ([`crate::format::PixelFormat::Gray16`]).
pub const PIXEL_FORMAT_GRAY16: u32 = 2;
/// Pixel format code of 8-bit B, G, R ([`crate::format::PixelFormat::Bgr8`]).
pub const PIXEL_FORMAT_BGR8: u32 = 3;
/// Pixel format code of 8-bit R, G, B ([`crate::format::PixelFormat::Rgb8`]).
pub const PIXEL_FORMAT_RGB8: u32 = 4;
/// `flags` bit: the producer writes the debug BGR slot.
pub const FLAG_DEBUG_BGR: u32 = 1;

/// Producer state, stored in [`HeaderDynamic::producer_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ProducerState {
    /// Created, not yet publishing.
    Starting = 0,
    /// Publishing frames.
    Running = 1,
    /// Shutting down cleanly; the object is about to be unlinked.
    Stopping = 2,
}

impl ProducerState {
    /// Decodes a stored value; `None` for anything unknown.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::Starting),
            1 => Some(Self::Running),
            2 => Some(Self::Stopping),
            _ => None,
        }
    }

    /// Lower-case name, as `inspect` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
        }
    }
}

/// The write-once part of the header (bytes 0..128). Readers never reference
/// it in shared memory: they copy it out with one volatile read after the
/// magic was seen, validate the copy, and use only the copy.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct HeaderFixed {
    /// [`MAGIC`]; zero while the producer initialises the bus.
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// Size in bytes of the whole shared memory object.
    pub total_size: u64,
    /// Random, new every time a producer creates the bus.
    pub instance_id: u64,
    /// Process id of the producer.
    pub producer_pid: u32,
    /// A [`crate::format::PixelFormat`] code (1 gray8, 2 gray16, 3 bgr8,
    /// 4 rgb8).
    pub pixel_format: u32,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in rows.
    pub height: u32,
    /// Bytes from the start of one frame row to the next
    /// (>= width * bytes_per_pixel).
    pub stride: u32,
    /// Number of gray slots: `max_consumers * pins_per_consumer + 2`.
    pub slot_count: u32,
    /// Consumer table entries (1..=63).
    pub max_consumers: u32,
    /// Frames one consumer may hold pinned at once (1..=8).
    pub pins_per_consumer: u32,
    /// Nominal frame rate in millihertz; 0 = unpaced (as fast as possible).
    pub fps_milli: u32,
    /// Bytes from one BGR row to the next in the debug slot (>= 3 * width).
    pub bgr_stride: u32,
    /// Bit set of `FLAG_*`.
    pub flags: u32,
    /// Channels per pixel of the format (1 gray, 3 colour).
    pub channels: u8,
    /// Bytes per pixel of the format (1, 2 or 3).
    pub bytes_per_pixel: u8,
    /// Significant bits per channel value: 8 for 8-bit formats; 1 to 16
    /// for gray16 (12 for a mono12 camera: values 0..=4095, unshifted).
    pub significant_bits: u8,
    /// Zero.
    pub _reserved: u8,
    /// Offset of the slot table.
    pub slot_table_offset: u64,
    /// Offset of the consumer table.
    pub consumer_table_offset: u64,
    /// Offset of the debug BGR slot.
    pub bgr_offset: u64,
    /// Offset of gray slot 0.
    pub gray_offset: u64,
    /// Distance between consecutive gray slots (>= stride * height, page multiple).
    pub slot_pitch: u64,
    /// Wall-clock creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
}

/// The producer-written dynamic fields (bytes 128..192).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct HeaderDynamic {
    /// Newest published frame, packed by [`pack_latest`]; 0 before the first.
    pub latest: AtomicU64,
    /// Frames published since the bus was created.
    pub frames_published: AtomicU64,
    /// `CLOCK_MONOTONIC` nanoseconds, refreshed at every publish and every
    /// 50 ms while the producer paces or idles (not while a camera read
    /// blocks).
    pub heartbeat_ns: AtomicU64,
    /// A [`ProducerState`].
    pub producer_state: AtomicU32,
    /// Consumers currently connected (informational).
    pub connected_consumers: AtomicU32,
    /// Nanoseconds the last publish took (slot choice to last trigger).
    pub last_publish_ns: AtomicU64,
    /// Frames per second published over the producer's recent window,
    /// millihertz (0 before the first window).
    pub publish_fps_milli: AtomicU32,
    /// Zero.
    pub _reserved0: AtomicU32,
    /// Zero.
    pub _reserved: [AtomicU64; 2],
}

/// The debug BGR slot's seqlock and description (bytes 192..256).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct BgrSeqlock {
    /// Odd while the producer writes the BGR slot; even otherwise; 0 = never
    /// written.
    pub seqlock: AtomicU64,
    /// Sequence number of the frame in the BGR slot.
    pub frame_seq: AtomicU64,
    /// Capture time of that frame, `CLOCK_MONOTONIC` nanoseconds.
    pub capture_ns: AtomicU64,
    /// Zero.
    pub _reserved: [AtomicU64; 5],
}

/// Packs the newest frame's sequence number and slot index into one word:
/// `seq << 16 | slot`. Sequence numbers start at 1, so 0 means "none yet".
pub fn pack_latest(seq: u64, slot: u32) -> u64 {
    debug_assert!(seq < (1 << 48) && slot < (1 << 16));
    (seq << 16) | u64::from(slot)
}

/// Inverse of [`pack_latest`]: `(seq, slot)`, or `None` before the first frame.
pub fn unpack_latest(latest: u64) -> Option<(u64, u32)> {
    (latest != 0).then_some((latest >> 16, (latest & 0xFFFF) as u32))
}

impl HeaderDynamic {
    /// The newest frame as `(seq, slot)`. Acquire pairs with the producer's
    /// Release store so the slot's metadata is visible; the pin's own Acquire
    /// is what makes the pixels safe to read (see doc/PROTOCOL.md).
    pub fn latest(&self) -> Option<(u64, u32)> {
        unpack_latest(self.latest.load(Ordering::Acquire))
    }

    /// The producer state, `None` if the stored value is unknown.
    pub fn state(&self) -> Option<ProducerState> {
        ProducerState::from_u32(self.producer_state.load(Ordering::Relaxed))
    }
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<HeaderFixed>() == 128);
    assert!(offset_of!(HeaderFixed, magic) == 0);
    assert!(offset_of!(HeaderFixed, version) == 8);
    assert!(offset_of!(HeaderFixed, header_size) == 12);
    assert!(offset_of!(HeaderFixed, total_size) == 16);
    assert!(offset_of!(HeaderFixed, instance_id) == 24);
    assert!(offset_of!(HeaderFixed, producer_pid) == 32);
    assert!(offset_of!(HeaderFixed, pixel_format) == 36);
    assert!(offset_of!(HeaderFixed, width) == 40);
    assert!(offset_of!(HeaderFixed, height) == 44);
    assert!(offset_of!(HeaderFixed, stride) == 48);
    assert!(offset_of!(HeaderFixed, slot_count) == 52);
    assert!(offset_of!(HeaderFixed, max_consumers) == 56);
    assert!(offset_of!(HeaderFixed, pins_per_consumer) == 60);
    assert!(offset_of!(HeaderFixed, fps_milli) == 64);
    assert!(offset_of!(HeaderFixed, bgr_stride) == 68);
    assert!(offset_of!(HeaderFixed, flags) == 72);
    assert!(offset_of!(HeaderFixed, channels) == 76);
    assert!(offset_of!(HeaderFixed, bytes_per_pixel) == 77);
    assert!(offset_of!(HeaderFixed, significant_bits) == 78);
    assert!(offset_of!(HeaderFixed, _reserved) == 79);
    assert!(offset_of!(HeaderFixed, slot_table_offset) == 80);
    assert!(offset_of!(HeaderFixed, consumer_table_offset) == 88);
    assert!(offset_of!(HeaderFixed, bgr_offset) == 96);
    assert!(offset_of!(HeaderFixed, gray_offset) == 104);
    assert!(offset_of!(HeaderFixed, slot_pitch) == 112);
    assert!(offset_of!(HeaderFixed, created_unix_ns) == 120);
    assert!(size_of::<HeaderDynamic>() == 64);
    assert!(offset_of!(HeaderDynamic, latest) == 0);
    assert!(offset_of!(HeaderDynamic, frames_published) == 8);
    assert!(offset_of!(HeaderDynamic, heartbeat_ns) == 16);
    assert!(offset_of!(HeaderDynamic, producer_state) == 24);
    assert!(offset_of!(HeaderDynamic, connected_consumers) == 28);
    assert!(offset_of!(HeaderDynamic, last_publish_ns) == 32);
    assert!(offset_of!(HeaderDynamic, publish_fps_milli) == 40);
    assert!(size_of::<BgrSeqlock>() == 64);
    assert!(offset_of!(BgrSeqlock, seqlock) == 0);
    assert!(offset_of!(BgrSeqlock, frame_seq) == 8);
    assert!(offset_of!(BgrSeqlock, capture_ns) == 16);
};

/// Offset, in the header page, of the trigger directory's path: written once
/// by the producer before the magic, NUL-padded UTF-8. Consumers create
/// their FIFOs there, so producer and consumers agree on the directory
/// whatever their environments (`FRAMEBUS_RUNTIME_DIR`) say.
pub const TRIGGER_DIR_OFFSET: u64 = 256;
/// Bytes reserved for the trigger directory path (at most 255 of path and
/// a NUL).
pub const TRIGGER_DIR_LEN: usize = 256;

/// Encodes a trigger directory path for [`TRIGGER_DIR_OFFSET`].
pub fn encode_trigger_dir(path: &str) -> Result<[u8; TRIGGER_DIR_LEN], crate::LayoutError> {
    check_trigger_dir(path)?;
    let mut out = [0u8; TRIGGER_DIR_LEN];
    out[..path.len()].copy_from_slice(path.as_bytes());
    Ok(out)
}

/// Decodes and checks the trigger directory path read from a header page.
pub fn decode_trigger_dir(bytes: &[u8]) -> Result<&str, crate::LayoutError> {
    let bytes = &bytes[..bytes.len().min(TRIGGER_DIR_LEN)];
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(crate::LayoutError::TriggerDir {
            why: "it is not NUL-terminated within 256 bytes",
        })?;
    let path = std::str::from_utf8(&bytes[..end]).map_err(|_| crate::LayoutError::TriggerDir {
        why: "it is not UTF-8",
    })?;
    check_trigger_dir(path)?;
    Ok(path)
}

/// The prefix of a trigger "directory" a Windows producer records: its
/// consumers' named pipes are `\\.\pipe\` plus the path's components
/// joined by dots.
pub const WINDOWS_PIPE_PREFIX: &str = r"\\.\pipe\";

fn check_trigger_dir(path: &str) -> Result<(), crate::LayoutError> {
    let why = match () {
        // `\\.\pipe\...`: a Windows producer's name prefix for its
        // trigger pipes (there are no trigger directories on Windows).
        _ if !path.starts_with('/') && !path.starts_with(WINDOWS_PIPE_PREFIX) => {
            "it is not an absolute path"
        }
        _ if path.len() >= TRIGGER_DIR_LEN => "it is longer than 255 bytes",
        _ if path.contains('\0') => "it contains a NUL byte",
        _ if path.split(['/', '\\']).any(|c| c == "..") => "it contains a `..` component",
        _ => return Ok(()),
    };
    Err(crate::LayoutError::TriggerDir { why })
}

/// Offset of [`HeaderDynamic`] in the object.
pub const DYNAMIC_OFFSET: u64 = 128;
/// Offset of [`BgrSeqlock`] in the object.
pub const BGR_SEQLOCK_OFFSET: u64 = 192;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_round_trips() {
        assert_eq!(unpack_latest(0), None);
        assert_eq!(unpack_latest(pack_latest(1, 0)), Some((1, 0)));
        let big = (1 << 48) - 1;
        assert_eq!(unpack_latest(pack_latest(big, 505)), Some((big, 505)));
    }

    #[test]
    fn trigger_dir_round_trips_and_rejects_bad_paths() {
        let enc = encode_trigger_dir("/run/user/1000/framebus/cam0").unwrap();
        assert_eq!(decode_trigger_dir(&enc), Ok("/run/user/1000/framebus/cam0"));
        let pipes = r"\\.\pipe\framebus\cam0";
        assert_eq!(
            decode_trigger_dir(&encode_trigger_dir(pipes).unwrap()),
            Ok(pipes)
        );
        for bad in [
            "relative/x",
            "/a/../b",
            r"\\.\pipe\a\..\b",
            r"\\server\share\x",
            r"C:\framebus\x",
            &format!("/{}", "x".repeat(255)),
        ] {
            assert!(encode_trigger_dir(bad).is_err(), "{bad}");
        }
        assert!(decode_trigger_dir(&[b'/'; 256]).is_err(), "no NUL");
        assert!(decode_trigger_dir(&[0xFF, 0]).is_err(), "not UTF-8");
        assert!(decode_trigger_dir(&[0u8; 256]).is_err(), "empty");
    }

    #[test]
    fn magic_reads_framebus() {
        assert_eq!(&MAGIC.to_le_bytes(), b"FRAMEBUS");
    }
}
