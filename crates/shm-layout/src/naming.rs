//! Bus names and the names derived from them (shared memory object, trigger
//! directory, FIFO file names). Pure functions: no OS calls.

use std::fmt;
use std::path::{Path, PathBuf};

/// Longest bus name accepted.
pub const MAX_BUS_NAME_LEN: usize = 64;

/// A validated bus name: 1 to 64 characters of `[A-Za-z0-9_.-]`, not starting
/// with `.` or `-`. It is used verbatim in `/dev/shm/framebus.<bus>` and in the
/// trigger directory, so no `/` and no `..` can reach a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BusName(String);

/// Why a string is not a bus name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid bus name {name:?}: {why} (use 1 to 64 characters from A-Z a-z 0-9 _ . -, not starting with . or -)")]
pub struct BusNameError {
    /// The rejected name.
    pub name: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl BusName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, BusNameError> {
        let err = |why| BusNameError {
            name: name.to_owned(),
            why,
        };
        if name.is_empty() {
            return Err(err("it is empty"));
        }
        if name.len() > MAX_BUS_NAME_LEN {
            return Err(err("it is longer than 64 characters"));
        }
        if name.starts_with('.') || name.starts_with('-') {
            return Err(err("it starts with . or -"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(err("it contains a character other than A-Z a-z 0-9 _ . -"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The POSIX shared memory name, `/framebus.<bus>` (on Linux the file
    /// `/dev/shm/framebus.<bus>`).
    pub fn shm_name(&self) -> String {
        format!("/{SHM_PREFIX}{}", self.0)
    }

    /// The POSIX shared memory name of the bus's producer lock,
    /// `/.framebus-lock.<bus>` (on Linux the file
    /// `/dev/shm/.framebus-lock.<bus>`, beside the bus object).
    pub fn lock_name(&self) -> String {
        format!("/{LOCK_PREFIX}{}", self.0)
    }

    /// The directory holding this bus's trigger FIFOs, below `runtime_root`
    /// (see [`runtime_root`]).
    pub fn trigger_dir(&self, runtime_root: &Path) -> PathBuf {
        runtime_root.join(&self.0)
    }
}

impl fmt::Display for BusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: width and alignment (`{:>12}`) apply.
        f.pad(&self.0)
    }
}

/// Prefix of every framebus shared memory object name (after the `/`).
pub const SHM_PREFIX: &str = "framebus.";

/// Prefix of every producer lock object name (after the `/`). Bus names
/// never start with `.`, so no bus object can be taken for a lock.
pub const LOCK_PREFIX: &str = ".framebus-lock.";

/// The root of all trigger directories: `<dir>/framebus` when an absolute
/// override `dir` is given (`FRAMEBUS_RUNTIME_DIR`), else
/// `/dev/shm/framebus-<uid>` — beside the bus objects, so that every process
/// that can see a bus (containers sharing only `/dev/shm` included) can
/// reach its FIFOs.
pub fn runtime_root(dir: Option<&str>, uid: u32) -> PathBuf {
    match dir {
        Some(dir) if dir.starts_with('/') => Path::new(dir).join("framebus"),
        _ => PathBuf::from(format!("/dev/shm/framebus-{uid}")),
    }
}

/// Whether `dir` (a trigger directory read from a bus header) has the shape
/// a producer gives it for `bus`: `.../framebus/<bus>` or
/// `.../framebus-<anything>/<bus>`. A consumer creates its FIFO only in such
/// a directory, so a corrupt or hostile header cannot make it write
/// elsewhere.
pub fn is_trigger_dir_for(dir: &Path, bus: &BusName) -> bool {
    let parent = dir
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str());
    dir.is_absolute()
        && dir.file_name().and_then(|n| n.to_str()) == Some(bus.as_str())
        && parent.is_some_and(|p| p == "framebus" || p.starts_with("framebus-"))
}

/// The file name of the trigger FIFO of consumer entry `index`'s owner of
/// claim generation `generation`: `consumer-<index>-<generation>.fifo`.
/// Every owner of an entry has its own name, so a leaving owner can never
/// remove, or be taken for, its successor's FIFO.
pub fn fifo_file_name(index: usize, generation: u32) -> String {
    format!("consumer-{index}-{generation}.fifo")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["cam0", "a", "front-left_2.raw", &"x".repeat(64)] {
            assert!(BusName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_paths_and_oddities() {
        for bad in [
            "",
            "a/b",
            "..",
            ".hidden",
            "-x",
            "a b",
            "é",
            &"x".repeat(65),
            "a\0b",
        ] {
            assert!(BusName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn derived_names() {
        let b = BusName::new("cam0").unwrap();
        assert_eq!(b.shm_name(), "/framebus.cam0");
        assert_eq!(
            format!("[{b:>6}|{b:<5}]"),
            "[  cam0|cam0 ]",
            "width applies"
        );
        assert_eq!(b.lock_name(), "/.framebus-lock.cam0");
        assert_eq!(b.to_string(), "cam0");
        assert_eq!(
            b.trigger_dir(&runtime_root(Some("/run/user/1000"), 1000)),
            PathBuf::from("/run/user/1000/framebus/cam0")
        );
        assert_eq!(runtime_root(None, 7), PathBuf::from("/dev/shm/framebus-7"));
        assert_eq!(
            runtime_root(Some("relative"), 7),
            PathBuf::from("/dev/shm/framebus-7")
        );
        assert_eq!(fifo_file_name(3, 17), "consumer-3-17.fifo");
        assert!(!is_trigger_dir_for(Path::new("framebus/cam0"), &b));
    }

    /// Trigger directories are absolute paths, which on Windows is the pipe
    /// name prefix `\\.\pipe\framebus\<bus>`.
    #[test]
    #[cfg(windows)]
    fn trigger_dirs_on_windows() {
        let b = BusName::new("cam0").unwrap();
        assert!(is_trigger_dir_for(Path::new(r"\\.\pipe\framebus\cam0"), &b));
        assert!(!is_trigger_dir_for(
            Path::new(r"\\.\pipe\framebus\cam1"),
            &b
        ));
        assert!(!is_trigger_dir_for(Path::new(r"\\.\pipe\other\cam0"), &b));
    }

    #[test]
    #[cfg(unix)]
    fn trigger_dirs_on_unix() {
        let b = BusName::new("cam0").unwrap();
        assert!(is_trigger_dir_for(
            Path::new("/run/user/1/framebus/cam0"),
            &b
        ));
        assert!(is_trigger_dir_for(Path::new("/tmp/framebus-0/cam0"), &b));
        assert!(is_trigger_dir_for(
            Path::new("/dev/shm/framebus-0/cam0"),
            &b
        ));
        assert!(!is_trigger_dir_for(Path::new("/etc/cam0"), &b));
        assert!(!is_trigger_dir_for(Path::new("/tmp/framebus-0/cam1"), &b));
    }
}
