//! Liveness tokens: open-file-description locks on the bus object.
//!
//! Each owner — the producer, and each consumer entry — holds a write lock
//! on one byte of the bus object: byte 0 for the producer, byte `1 + i` for
//! consumer entry `i` ([`TokenId::offset`]). The lock belongs to the *open
//! file description* (`F_OFD_SETLK`), not to a process, so:
//! - the kernel drops it exactly when the owner's last descriptor (or
//!   mapping) of that open closes — when the owner exits, however it exits;
//! - it ignores pid namespaces and pid reuse: nothing in it is a pid;
//! - two owners in one process (two consumers) hold separate tokens, because
//!   each opens the object itself;
//! - a forked child that keeps the descriptor keeps the token held (the safe
//!   direction: an entry is never reclaimed under a live holder).
//!
//! Anyone with the object open tests a token with `F_OFD_GETLK`, which
//! reports a conflicting lock without taking anything. One syscall.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use crate::TokenId;

fn lock_request(id: TokenId, kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a plain C struct of integers, for which all-zero
    // bytes are a valid value (and l_pid must be 0 for OFD requests).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = id.offset() as libc::off_t;
    fl.l_len = 1;
    fl
}

fn fcntl_lock(fd: impl AsFd, cmd: libc::c_int, fl: &mut libc::flock) -> io::Result<()> {
    // SAFETY: the descriptor is open for the duration of the call (borrowed)
    // and `fl` points to a valid, initialised `flock` that the kernel reads
    // and, for F_OFD_GETLK, writes back; nothing else aliases it.
    let r = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), cmd, fl as *mut libc::flock) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Takes token `id` through this open of the bus object (which must be open
/// for writing) without blocking. `Ok(false)` if another open holds it.
pub fn try_hold_token(fd: impl AsFd, id: TokenId) -> io::Result<bool> {
    let mut fl = lock_request(id, libc::F_WRLCK);
    match fcntl_lock(fd, libc::F_OFD_SETLK, &mut fl) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Lets token `id` go, through the open that holds it. Releasing a token
/// this open does not hold does nothing.
pub fn release_token(fd: impl AsFd, id: TokenId) -> io::Result<()> {
    let mut fl = lock_request(id, libc::F_UNLCK);
    fcntl_lock(fd, libc::F_OFD_SETLK, &mut fl)
}

/// Whether another open of the bus object holds token `id` — that is,
/// whether its owner still has the object open. Tokens held through `fd`
/// itself do not count. Works on a read-only descriptor.
pub fn token_held(fd: impl AsFd, id: TokenId) -> io::Result<bool> {
    // A read-lock probe conflicts with any write lock, and needs no write
    // access to the descriptor.
    let mut fl = lock_request(id, libc::F_RDLCK);
    fcntl_lock(fd, libc::F_OFD_GETLK, &mut fl)?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn open(path: &std::path::Path, write: bool) -> std::fs::File {
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .expect("open test file")
    }

    #[test]
    fn tokens_are_per_open_and_tested_without_taking_them() {
        let dir = std::env::temp_dir().join(format!("fb-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bus");
        std::fs::write(&path, b"").unwrap();
        let a = open(&path, true);
        let b = open(&path, true);
        let ro = open(&path, false);
        let c3 = TokenId::Consumer(3);
        assert!(!token_held(&ro, c3).unwrap());
        assert!(try_hold_token(&a, c3).unwrap());
        assert!(
            try_hold_token(&a, c3).unwrap(),
            "re-taking one's own is fine"
        );
        assert!(token_held(&ro, c3).unwrap(), "seen from a read-only open");
        assert!(token_held(&b, c3).unwrap());
        assert!(
            !token_held(&a, c3).unwrap(),
            "one's own lock is no conflict"
        );
        assert!(!try_hold_token(&b, c3).unwrap(), "a second open is refused");
        assert!(!token_held(&ro, TokenId::Consumer(2)).unwrap());
        assert!(!token_held(&ro, TokenId::Producer).unwrap());
        assert!(try_hold_token(&b, TokenId::Producer).unwrap());
        assert!(token_held(&ro, TokenId::Producer).unwrap());
        release_token(&a, c3).unwrap();
        assert!(!token_held(&ro, c3).unwrap());
        assert!(try_hold_token(&b, c3).unwrap());
        drop(b); // closing the last descriptor of an open drops its tokens
        assert!(!token_held(&ro, c3).unwrap());
        assert!(!token_held(&ro, TokenId::Producer).unwrap());
        // A duplicated descriptor shares the open, hence the token.
        assert!(try_hold_token(&a, c3).unwrap());
        let dup = a.try_clone().unwrap();
        drop(a);
        assert!(token_held(&ro, c3).unwrap(), "the duplicate keeps it");
        drop(dup);
        assert!(!token_held(&ro, c3).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Only a conflict is "held by another": any other failure of the lock
    /// request is an error. A read-only open cannot take a write lock
    /// (EBADF), even on a token nobody holds, and takes nothing.
    #[test]
    fn a_read_only_open_gets_an_error_not_a_refusal() {
        let dir = std::env::temp_dir().join(format!("fb-token-ro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bus");
        std::fs::write(&path, b"").unwrap();
        let ro = open(&path, false);
        let rw = open(&path, true);
        let c5 = TokenId::Consumer(5);
        let e = try_hold_token(&ro, c5).expect_err("a write lock through a read-only open");
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
        assert!(!token_held(&rw, c5).unwrap(), "nothing was taken");
        assert!(try_hold_token(&rw, c5).unwrap());
        drop(rw);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
