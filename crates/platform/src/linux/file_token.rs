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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_token_is_held_until_dropped_and_refused_to_a_second_holder() {
        let dir = std::env::temp_dir().join(format!("fb-filetoken-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lock = dir.join(".x.lock");
        assert!(!file_token_held(&lock), "no file, no holder");
        let held = hold_file_token(&lock).unwrap().expect("free");
        assert!(file_token_held(&lock));
        assert!(
            hold_file_token(&lock).unwrap().is_none(),
            "a second holder is refused"
        );
        drop(held);
        assert!(!file_token_held(&lock), "dropped: let go");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
