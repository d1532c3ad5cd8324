//! Linux: POSIX shared memory in /dev/shm, FIFOs with rustix,
//! open-file-description locks as liveness tokens, signal flags with
//! signal-hook.

pub mod dir;
pub mod fault;
pub mod fifo;
pub mod file_token;
pub mod lock;
pub mod process;
pub mod shm;
pub mod token;

pub use dir::*;
pub use fault::*;
pub use fifo::*;
pub use file_token::*;
pub use lock::*;
pub use process::*;
pub use shm::*;
pub use token::*;
