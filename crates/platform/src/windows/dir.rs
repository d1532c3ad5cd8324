//! Trigger "directories" on Windows: a name prefix under `\\.\pipe\`, since
//! a trigger is a named pipe, not a file. Nothing is created, checked or
//! removed on disk.

use std::io;
use std::path::{Path, PathBuf};

/// The variable that moves the runtime root on Linux; on Windows a value
/// is used as a tag in pipe names (`\\.\pipe\framebus-<tag>\...`), so tests
/// can keep their pipes apart.
pub const RUNTIME_DIR_VAR: &str = "FRAMEBUS_RUNTIME_DIR";

/// The mode of a shared trigger directory on Linux; unused on Windows.
pub const SHARED_DIR_MODE: u32 = 0o3770;

/// The root of trigger pipe names: `\\.\pipe\framebus`.
pub fn runtime_root() -> PathBuf {
    PathBuf::from(r"\\.\pipe\framebus")
}

/// Nothing to create on Windows.
pub fn ensure_trigger_dir(_path: &Path, _group: Option<u32>) -> io::Result<()> {
    Ok(())
}

/// No directories to traverse on Windows.
pub fn untraversable_by_group(_dir: &Path, _gid: u32) -> Option<PathBuf> {
    None
}

/// Whether `path` is a trigger pipe prefix (there are no directories).
pub fn is_own_dir(path: &Path) -> bool {
    path.starts_with(runtime_root())
}

/// A trigger pipe prefix is never shared with a group on Windows.
pub fn check_trigger_dir(_dir: &Path) -> io::Result<bool> {
    Ok(false)
}

/// Buses cannot be listed on Windows yet (named sections cannot be
/// enumerated without the native object-directory API): always empty.
pub fn bus_names_on_machine(_root: &Path) -> Vec<String> {
    Vec::new()
}
