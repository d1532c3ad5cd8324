//! A harness for tests that run the producer and consumer libraries inside
//! the test process (rather than the `framebus` binary).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};

use shm_layout::BusName;

static ENV_INIT: Once = Once::new();
/// Tests currently holding an [`InProcess`]; the last one out removes the
/// private runtime directory, the first one in (re)creates it.
static ACTIVE: Mutex<usize> = Mutex::new(0);

/// `/tmp/framebus-inproc-<pid>`: this test binary's `FRAMEBUS_RUNTIME_DIR`.
fn runtime_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/framebus-inproc-{}", std::process::id()))
}

/// An in-process test's bus: a private `FRAMEBUS_RUNTIME_DIR` for this test
/// binary (set once, before any bus exists), and on drop the shared memory
/// object removed even if the test failed.
pub struct InProcess {
    /// `<prefix>-<tag>-<pid>`: unique per test and per test run.
    pub bus: BusName,
}

impl InProcess {
    /// A bus named `<prefix>-<tag>-<pid>`.
    pub fn new(prefix: &str, tag: &str) -> Self {
        ENV_INIT.call_once(|| std::env::set_var("FRAMEBUS_RUNTIME_DIR", runtime_dir()));
        {
            let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
            if *active == 0 {
                use std::os::unix::fs::DirBuilderExt;
                let _ = std::fs::DirBuilder::new().mode(0o700).create(runtime_dir());
            }
            *active += 1;
        }
        let bus =
            BusName::new(&format!("{prefix}-{tag}-{}", std::process::id())).expect("bus name");
        Self { bus }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.bus.shm_name()));
        let _ = std::fs::remove_file(format!("/dev/shm/.framebus-lock.{}", self.bus));
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        *active -= 1;
        if *active == 0 {
            let _ = std::fs::remove_dir_all(runtime_dir());
        }
    }
}

/// Sets a flag when dropped: stops a producer thread even if the test
/// fails first.
pub struct StopOnDrop(pub Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
