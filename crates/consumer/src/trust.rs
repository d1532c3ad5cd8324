//! Who may own a bus this process attaches to.
//!
//! A bus is memory another process controls: its frames, its header and the
//! trigger directory its header names. A consumer (and `inspect`,
//! `snapshot`, the bridge) uses one only if `fstat` says the object is owned
//! by a user it trusts and is not writable by everyone, and the trigger
//! directory is a real directory (never a link) owned by the bus's owner and
//! not writable by everyone. Trusted: this process's own user, the uids in
//! [`crate::ConsumerConfig::trusted_owners`], and the uids listed in
//! `FRAMEBUS_TRUST_OWNERS` (comma-separated) — the documented way for the
//! members of a group bus to accept its producer's user.

use std::path::Path;

use crate::error::ConsumerError;
use crate::sys;

/// The variable that lists more trusted bus owners: uids, comma-separated.
pub const TRUST_OWNERS_VAR: &str = "FRAMEBUS_TRUST_OWNERS";

/// The owners a process trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    owners: Vec<u32>,
}

impl Trust {
    /// This process's user, `extra`, and the uids in `FRAMEBUS_TRUST_OWNERS`.
    /// An entry of the variable that is not a uid is an error, so a typo
    /// never silently trusts nobody (or somebody).
    pub fn new(extra: &[u32]) -> Result<Self, ConsumerError> {
        let mut owners = vec![sys::my_uid()];
        owners.extend_from_slice(extra);
        if let Ok(list) = std::env::var(TRUST_OWNERS_VAR) {
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let uid = item
                    .parse::<u32>()
                    .map_err(|_| ConsumerError::BadTrustList {
                        item: item.to_owned(),
                    })?;
                owners.push(uid);
            }
        }
        Ok(Self { owners })
    }

    /// Whether `uid` is trusted.
    pub fn trusts(&self, uid: u32) -> bool {
        self.owners.contains(&uid)
    }

    /// Checks the bus object: owned by a trusted user, not world-writable.
    /// Returns its owner.
    #[cfg(unix)]
    pub(crate) fn check_object(
        &self,
        bus: &str,
        fd: &sys::BusHandle,
    ) -> Result<u32, ConsumerError> {
        let st = rustix::fs::fstat(fd).map_err(|e| ConsumerError::Os {
            what: format!("cannot stat /dev/shm/framebus.{bus}"),
            source: e.into(),
        })?;
        let mode = st.st_mode & 0o7777;
        let why = if !self.trusts(st.st_uid) {
            "its owner is not this user nor a trusted owner"
        } else if mode & 0o002 != 0 {
            "everyone may write it"
        } else {
            return Ok(st.st_uid);
        };
        Err(ConsumerError::Untrusted {
            path: format!("/dev/shm/framebus.{bus}"),
            owner: st.st_uid,
            mode,
            why,
        })
    }

    /// Checks the trigger directory a header names: a real directory (not a
    /// link), owned by the bus's owner, not world-writable.
    #[cfg(unix)]
    pub(crate) fn check_trigger_dir(
        &self,
        dir: &Path,
        bus_owner: u32,
    ) -> Result<(), ConsumerError> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(dir).map_err(|e| ConsumerError::Os {
            what: format!("trigger directory {}", dir.display()),
            source: e,
        })?;
        let mode = meta.mode() & 0o7777;
        let why = if meta.file_type().is_symlink() {
            "it is a symbolic link"
        } else if !meta.is_dir() {
            "it is not a directory"
        } else if meta.uid() != bus_owner {
            "its owner is not the bus's owner"
        } else if mode & 0o002 != 0 {
            "everyone may write it"
        } else {
            return Ok(());
        };
        Err(ConsumerError::Untrusted {
            path: dir.display().to_string(),
            owner: meta.uid(),
            mode,
            why,
        })
    }

    /// Windows: a bus object lives in this logon session's `Local\`
    /// namespace with a DACL granting its creator alone (or a SID the
    /// creator chose to share with), so any object this process can open
    /// there was made by this user or shared with it on purpose; the
    /// user's. The owner reported is this process's.
    #[cfg(windows)]
    pub(crate) fn check_object(
        &self,
        _bus: &str,
        _fd: &sys::BusHandle,
    ) -> Result<u32, ConsumerError> {
        Ok(sys::my_uid())
    }

    /// Windows: triggers are named pipes, not files in a directory; there
    /// is no directory to check.
    #[cfg(windows)]
    pub(crate) fn check_trigger_dir(
        &self,
        _dir: &Path,
        _bus_owner: u32,
    ) -> Result<(), ConsumerError> {
        Ok(())
    }
}
