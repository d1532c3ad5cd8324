//! Windows: named file mappings in the session's `Local\` namespace, named
//! pipes for triggers, named kernel objects as liveness tokens, and console
//! control events for a clean stop. The same interface as `linux/`.
//!
//! What differs from Linux, and why it is safe:
//! - A named mapping cannot be unlinked: it lives until its last handle
//!   closes. A producer therefore creates each instance of a bus under the
//!   first free name `Local\framebus.NAME#g` (g = 0..[`MAX_INSTANCES`]),
//!   and consumers attach to the one whose producer token is held. An old
//!   instance that a slow consumer still maps stays where it is, untouched.
//! - The memory cannot shrink under a mapping, so there is no truncation
//!   to survive ([`GuardedMap::broken`] is always false).
//! - There is no `fork`: [`ForkGuard::in_child`] is always false.
//! - Trigger pipes are named pipes, not files: a trigger "directory" is a
//!   name prefix under `\\.\pipe\`, and there is nothing to create, check or
//!   remove on disk.

pub mod dir;
pub mod fault;
pub mod file_token;
pub mod pipe;
pub mod process;
pub mod security;
pub mod shm;
pub(crate) mod wide;

#[cfg(test)]
mod tests;

pub use dir::*;
pub use fault::*;
pub use file_token::*;
pub use pipe::*;
pub use process::*;
pub use security::{object_sddl, user_sid, NAMESPACE_VAR, SHARE_SID_VAR};
pub use shm::*;
