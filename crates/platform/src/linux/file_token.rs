//! A liveness token beside a file that is not a bus (a bridge's stats
//! file): an open-file-description lock on a lock file, as the bus's own
//! tokens are, so a reader tells a killed writer's leftover by the token's
//! absence, never by its pid.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::TokenId;

/// A held file token; dropping it (or the process ending) lets it go.
#[derive(Debug)]
pub struct FileToken {
    _file: File,
}

/// Takes the token of `lock` (a file created 0600 if missing) without
/// blocking: `Ok(None)` if another process holds it.
pub fn hold_file_token(lock: &Path) -> io::Result<Option<FileToken>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(lock)?;
    Ok(
        crate::linux::token::try_hold_token(&file, TokenId::Producer)?
            .then_some(FileToken { _file: file }),
    )
}

/// Whether some process holds the token of `lock`. A missing file is no
/// holder; if the kernel cannot tell, the holder is taken for alive.
pub fn file_token_held(lock: &Path) -> bool {
    std::fs::File::open(lock)
        .is_ok_and(|f| crate::linux::token::token_held(&f, TokenId::Producer).unwrap_or(true))
}

/// Where framebus keeps small state files of its own (a bridge's stats):
/// the runtime root.
pub fn state_root() -> PathBuf {
    crate::linux::dir::runtime_root()
}
