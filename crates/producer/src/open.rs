//! [`open_source`]: a [`SourceSpec`] made into a [`FrameSource`], in every
//! build — without the `opencv` feature, cameras and video files are a
//! clear error that says how to build with it.

use crate::fake::FakeSource;
use crate::source::{FrameSource, SourceError, SourceSpec};

/// Whether this build reads cameras and video files (the `opencv` feature).
pub const OPENCV_ENABLED: bool = cfg!(feature = "opencv");

/// How to open a source.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SourceOptions {
    /// Frame size: the fake camera's (default 640x480), or what to ask a
    /// camera for. Video files have their own.
    pub size: Option<(u32, u32)>,
    /// Frame rate to ask a camera for.
    pub fps: Option<f64>,
    /// Start a video file over at its end instead of ending.
    pub looping: bool,
}

/// Opens the source `spec` names.
pub fn open_source(
    spec: &SourceSpec,
    opts: &SourceOptions,
) -> Result<Box<dyn FrameSource>, SourceError> {
    match spec {
        SourceSpec::Fake => {
            let (w, h) = opts.size.unwrap_or((640, 480));
            Ok(Box::new(FakeSource::new(w, h)))
        }
        #[cfg(feature = "opencv")]
        SourceSpec::Camera(index) => {
            let request = crate::opencv_source::CameraRequest {
                size: opts.size,
                fps: opts.fps,
            };
            Ok(Box::new(crate::opencv_source::OpenCvSource::open_camera(
                *index, request,
            )?))
        }
        #[cfg(feature = "opencv")]
        SourceSpec::Video(path) => Ok(Box::new(crate::opencv_source::OpenCvSource::open_video(
            path,
            opts.looping,
        )?)),
        #[cfg(not(feature = "opencv"))]
        SourceSpec::Camera(_) | SourceSpec::Video(_) => Err(SourceError::OpenCvMissing {
            spec: spec.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_opens_at_the_requested_size() {
        let src = open_source(
            &SourceSpec::Fake,
            &SourceOptions {
                size: Some((64, 8)),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(src.size(), (64, 8));
        let src = open_source(&SourceSpec::Fake, &SourceOptions::default()).unwrap();
        assert_eq!(src.size(), (640, 480));
    }

    #[cfg(not(feature = "opencv"))]
    #[test]
    fn cameras_and_videos_say_how_to_build_with_opencv() {
        for spec in [SourceSpec::Camera(0), SourceSpec::Video("x.avi".into())] {
            let e = open_source(&spec, &SourceOptions::default())
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("cargo build --release --features opencv"), "{e}");
            assert!(e.contains("libopencv-dev clang libclang-dev"), "{e}");
        }
    }
}
