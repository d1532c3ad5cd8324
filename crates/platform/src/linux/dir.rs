//! Trigger directories: where consumers' FIFOs live, below a runtime root
//! that every process sharing `/dev/shm` can reach.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::linux::process::my_uid;

/// The variable that moves the runtime root (tests, or a deliberate choice):
/// `$FRAMEBUS_RUNTIME_DIR/framebus` instead of `/dev/shm/framebus-<uid>`.
pub const RUNTIME_DIR_VAR: &str = "FRAMEBUS_RUNTIME_DIR";

/// The root of trigger directories for this user: `/dev/shm/framebus-<uid>`
/// (beside the bus objects, so containers that share only `/dev/shm` reach
/// it), or `$FRAMEBUS_RUNTIME_DIR/framebus`.
pub fn runtime_root() -> PathBuf {
    let dir = std::env::var(RUNTIME_DIR_VAR).ok();
    shm_layout::naming::runtime_root(dir.as_deref(), my_uid())
}

/// Creates (or checks) a trigger directory: a real directory, ours, mode
/// 0700 — or, shared with `group`, setgid and sticky 3770 in that group (the
/// FIFOs group members create there belong to the group, and none of them
/// can rename or remove another's), below a root that the group may
/// traverse (0711). The root is created 0700 otherwise. Modes and owners
/// are set through descriptors opened without following links.
pub fn ensure_trigger_dir(path: &Path, group: Option<u32>) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        ensure_dir(parent, 0o700)?;
        if group.is_some() {
            // Search (not list) for others, so group members reach the
            // bus's directory; what is in the root stays hidden.
            let fd = crate::linux::fifo::open_dir_nofollow(parent)?;
            rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o711))?;
        }
    }
    ensure_dir(
        path,
        if group.is_some() {
            SHARED_DIR_MODE
        } else {
            0o700
        },
    )?;
    let fd = crate::linux::fifo::open_dir_nofollow(path)?;
    if let Some(g) = group {
        rustix::fs::fchown(&fd, None, Some(rustix::fs::Gid::from_raw(g)))?;
        // chown may clear the setgid bit: set the mode again.
        rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(SHARED_DIR_MODE))?;
    } else {
        rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o700))?;
    }
    Ok(())
}

/// The mode of a trigger directory shared with a group: setgid (FIFOs take
/// the directory's group), sticky (members cannot rename or remove each
/// other's FIFOs), rwx for owner and group.
pub const SHARED_DIR_MODE: u32 = 0o3770;

fn ensure_dir(path: &Path, mode: u32) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} exists and is not a directory",
            path.display()
        )));
    }
    if meta.uid() != my_uid() {
        return Err(io::Error::other(format!(
            "{} belongs to uid {}, not to this user",
            path.display(),
            meta.uid()
        )));
    }
    Ok(())
}

/// The first ancestor of `dir` (itself excluded) that members of group
/// `gid` (other than its owner) cannot search, if any.
pub fn untraversable_by_group(dir: &Path, gid: u32) -> Option<PathBuf> {
    dir.ancestors().skip(1).find_map(|a| {
        let m = std::fs::metadata(a).ok()?;
        let mode = m.mode();
        // Members of the directory's group get its group bits, not its
        // other bits (POSIX checks one class only).
        let searchable = if m.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        (!searchable).then(|| a.to_path_buf())
    })
}

/// Whether `path` is a directory (not a link to one) owned by this user.
pub fn is_own_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.uid() == my_uid())
}

/// Checks the trigger directory a producer recorded in its bus: a real
/// directory that is ours, or one shared with a group this process belongs
/// to (setgid and group-writable, as `--group` makes it). Returns whether it
/// is shared: then FIFOs are made writable by the group (the producer writes
/// them as a group member).
pub fn check_trigger_dir(dir: &Path) -> io::Result<bool> {
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let shared = meta.permissions().mode() & 0o2070 == 0o2070;
    if meta.uid() == my_uid() {
        return Ok(shared);
    }
    let gid = meta.gid();
    let mine = rustix::process::getegid().as_raw() == gid
        || rustix::process::getgroups().is_ok_and(|g| g.iter().any(|x| x.as_raw() == gid));
    if shared && mine {
        return Ok(true);
    }
    Err(io::Error::other(format!(
        "{} belongs to uid {} and is not shared with a group of this user (mode {:o})",
        dir.display(),
        meta.uid(),
        meta.permissions().mode() & 0o7777
    )))
}

/// Bus names that have a shared memory object in /dev/shm or a trigger
/// directory under `root`.
pub fn bus_names_on_machine(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_prefix(shm_layout::naming::SHM_PREFIX)
                .or_else(|| name.strip_prefix(shm_layout::naming::LOCK_PREFIX))
                .map(str::to_owned)
        })
        .collect();
    names.extend(
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| !n.starts_with('.')),
    );
    names.sort();
    names.dedup();
    names
}
