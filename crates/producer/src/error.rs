//! Everything that can stop a producer, each with what to do about it.

use std::io;
use std::path::PathBuf;

use shm_layout::LayoutError;

/// Why a producer could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// Another live producer owns the bus (it holds the bus's lock).
    #[error("{}", busy_message(bus, *pid))]
    BusBusy {
        /// The bus name.
        bus: String,
        /// The live producer's pid, read from the bus's header; 0 if the
        /// lock holder has no bus object (a producer starting or stopping,
        /// or `framebus clean` at work).
        pid: u32,
    },
    /// The object under the bus's name is not a framebus bus.
    #[error("{path} exists but is not a framebus bus ({reason}); if it is yours and unused, remove it: rm {path}")]
    Foreign {
        /// The object's path in /dev/shm.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The requested geometry cannot be laid out.
    #[error("cannot lay out the bus: {0}")]
    Layout(#[from] LayoutError),
    /// /dev/shm has no room for the bus.
    #[error("not enough room in /dev/shm for bus {bus:?}: it needs {size} bytes ({source}); free space in /dev/shm or use a smaller --size or --max-consumers")]
    NoSpace {
        /// The bus name.
        bus: String,
        /// Bytes needed.
        size: u64,
        /// The OS error.
        source: io::Error,
    },
    /// The trigger directory is unusable.
    #[error("trigger directory {path}: {source}")]
    TriggerDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// No slot could be taken for a whole second although every consumer
    /// was held to its budget: something outside framebus keeps writing
    /// the slot table.
    #[error("no free slot for 1 s although every consumer was held to its pin budget: another process is writing bus {bus:?}'s slot table; stop it and restart the producer")]
    SlotTableCorrupt {
        /// The bus name.
        bus: String,
    },
    /// Another process truncated the bus object while it was mapped. The
    /// producer survived (its mapping shows zero pages now); the bus must
    /// be created again, which [`crate::run_source`] does by itself.
    #[error("bus {bus:?} was truncated while mapped (another process shrank /dev/shm/framebus.{bus}); create the bus again")]
    BusTruncated {
        /// The bus name.
        bus: String,
    },
    /// The producer was used in a forked child of the process that created
    /// it: the bus belongs to the parent.
    #[error("this producer of bus {bus:?} belongs to the process that created it, and this is a forked child of it; publish from the parent, or create a new Producer in the child on another bus")]
    Forked {
        /// The bus name.
        bus: String,
    },
    /// The frame source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Any other OS call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

impl ProducerError {
    pub(crate) fn os(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Os { what, source }
    }
}

fn busy_message(bus: &str, pid: u32) -> String {
    if pid == 0 {
        format!("bus {bus:?} is locked by another process (a producer starting or stopping, or `framebus clean`): try again in a moment, or pick another --bus")
    } else {
        format!("bus {bus:?} is already produced by process {pid}: stop that producer first or pick another --bus")
    }
}

/// Why a source produced no frame, or could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source has no more frames (end of a file, `--frames` reached).
    #[error("the frame source ended")]
    Ended,
    /// The source delivers frames of another size from now on. The frame
    /// was not written; the source keeps it for the next call, and
    /// [`FrameSource::size`](crate::FrameSource::size) already reports the new size. `run_source`
    /// re-creates the bus at that size.
    #[error("the source's frames changed size to {width}x{height}")]
    GeometryChanged {
        /// The new width.
        width: u32,
        /// The new height.
        height: u32,
    },
    /// The `--source` text is not a source.
    #[error("unknown --source {spec:?}: {why}; use `fake`, `camera:INDEX` (e.g. camera:0) or `video:PATH` (e.g. video:clip.avi)")]
    BadSpec {
        /// What was given.
        spec: String,
        /// What is wrong with it.
        why: String,
    },
    /// Cameras and video files need the `opencv` cargo feature.
    #[error("--source {spec} needs OpenCV, which this build of framebus does not include; install OpenCV and rebuild with the feature: `sudo apt-get install libopencv-dev clang libclang-dev` then `cargo build --release --features opencv`")]
    OpenCvMissing {
        /// The source that was asked for.
        spec: String,
    },
    /// No camera has this index.
    #[error("no camera {index}: /dev/video{index} does not exist ({available}); pick another --source camera:N")]
    NoCamera {
        /// The index asked for.
        index: u32,
        /// Which cameras there are, in words.
        available: String,
    },
    /// The camera exists but cannot be used now.
    #[error("camera {index} ({path}) cannot be used: {why}")]
    CameraUnavailable {
        /// The index asked for.
        index: u32,
        /// Its device file.
        path: String,
        /// Why, and what to do.
        why: String,
    },
    /// The video file is missing, unreadable or not a video.
    #[error("cannot read video file {path}: {why}")]
    VideoUnreadable {
        /// The file.
        path: PathBuf,
        /// Why, and what to do.
        why: String,
    },
    /// The file is a media file without a video stream OpenCV can decode.
    #[error("video file {path} has no video stream: {why}")]
    NoVideoStream {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        why: String,
    },
    /// The source failed; the message says how and what to do.
    #[error("frame source failed: {0}")]
    Failed(String),
}
