//! A liveness token for a file that is not a bus (a bridge's stats file):
//! a named event `Local\framebus-file.<path>` that exists exactly while its
//! holder's handle is open, as the bus's own tokens are. No lock file is
//! needed on Windows.

use std::io;
use std::os::windows::io::OwnedHandle;
use std::path::{Path, PathBuf};

use crate::windows::security::namespace;
use crate::windows::shm::{create_named, named_object_exists};

/// A held file token; dropping it (or the process ending) lets it go.
#[derive(Debug)]
pub struct FileToken {
    _event: OwnedHandle,
}

/// The event's name: kernel object names may hold any character but `\`.
fn token_name(lock: &Path) -> String {
    format!(
        "{}\\framebus-file.{}",
        namespace(),
        lock.to_string_lossy().replace('\\', "/")
    )
}

/// Takes the token of `lock` without blocking: `Ok(None)` if another
/// process holds it. No file is created.
pub fn hold_file_token(lock: &Path) -> io::Result<Option<FileToken>> {
    Ok(create_named(&token_name(lock))?.map(|h| FileToken { _event: h }))
}

/// Whether some process holds the token of `lock` (if Windows cannot
/// tell, the holder is taken for alive).
pub fn file_token_held(lock: &Path) -> bool {
    named_object_exists(&token_name(lock)).unwrap_or(true)
}

/// Where framebus keeps small state files of its own (a bridge's stats):
/// `%LOCALAPPDATA%\framebus`, else the temporary directory's `framebus`.
pub fn state_root() -> PathBuf {
    std::env::var_os("LOCALAPPDATA")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("framebus")
}
