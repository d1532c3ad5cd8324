//! Trigger "directories" on Windows: a name prefix under `\\.\pipe\`, since
//! a trigger is a named pipe, not a file. Nothing of the protocol lives on
//! disk; only an empty marker file per running bus,
//! `%LOCALAPPDATA%\framebus\buses\NAME`, lets `list` find the buses (named
//! mappings cannot be enumerated): made with the trigger "directory",
//! removed with it, and a crashed producer's marker is skipped by `list`
//! (its bus does not open) and removed by `clean`.

use std::io;
use std::path::{Path, PathBuf};

/// The variable that moves the runtime root on Linux; Windows has no
/// runtime directory and ignores it (pipe names are unique per bus, entry
/// and generation).
pub const RUNTIME_DIR_VAR: &str = "FRAMEBUS_RUNTIME_DIR";

/// The mode of a shared trigger directory on Linux; unused on Windows.
pub const SHARED_DIR_MODE: u32 = 0o3770;

/// The root of trigger pipe names: `\\.\pipe\framebus`.
pub fn runtime_root() -> PathBuf {
    PathBuf::from(r"\\.\pipe\framebus")
}

/// Where the markers of running buses are: `%LOCALAPPDATA%\framebus\buses`.
fn markers_dir() -> Option<PathBuf> {
    Some(crate::windows::file_token::state_root().join("buses"))
}

/// Writes the bus's marker (best effort: a bus that `list` cannot find
/// still works, so a failure is only logged).
pub fn ensure_trigger_dir(path: &Path, _group: Option<u32>) -> io::Result<()> {
    if let (Some(dir), Some(name)) = (markers_dir(), path.file_name()) {
        let made = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(name), b""));
        if let Err(e) = made {
            tracing::debug!(
                "cannot write the marker of bus {name:?} in {} ({e}); `list` will not show it",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Removes the bus's marker. Nothing else to remove: a named pipe
/// disappears with its server's handle. Returns no pipes.
pub fn remove_trigger_dir(dir: &Path) -> Vec<PathBuf> {
    if let (Some(markers), Some(name)) = (markers_dir(), dir.file_name()) {
        let _ = std::fs::remove_file(markers.join(name));
    }
    Vec::new()
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

/// The buses with a marker (see the module docs), sorted.
pub fn bus_names_on_machine(_root: &Path) -> Vec<String> {
    let mut names: Vec<String> = markers_dir()
        .and_then(|d| std::fs::read_dir(d).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}
