//! A mapped view of the bus object. Windows cannot shrink a section under a
//! mapping, so there is no truncation to repair: the Linux interface
//! ([`GuardedMap::broken`], [`faults_repaired`]) answers "never".

use windows_sys::Win32::System::Memory::{UnmapViewOfFile, MEMORY_MAPPED_VIEW_ADDRESS};

/// A view of the bus object (`MapViewOfFile`), unmapped on drop.
pub struct GuardedMap {
    view: MEMORY_MAPPED_VIEW_ADDRESS,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the view is plain shared memory: any thread may read or write it
// through the raw pointer (every shared access in framebus is atomic or
// guarded by the protocol), and unmapping from another thread is allowed.
unsafe impl Send for GuardedMap {}
// SAFETY: as above; `&GuardedMap` only hands out the pointer and length.
unsafe impl Sync for GuardedMap {}

impl std::fmt::Debug for GuardedMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedMap")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

impl GuardedMap {
    /// Wraps a view whose first wanted byte is `delta` bytes past `view`
    /// (views start on the allocation granularity).
    ///
    /// # Safety
    /// `view` was returned by `MapViewOfFile` for at least `delta + len`
    /// bytes and is unmapped by nothing else.
    pub(crate) unsafe fn from_view(
        view: MEMORY_MAPPED_VIEW_ADDRESS,
        delta: usize,
        len: usize,
    ) -> Self {
        // SAFETY: `delta` is inside the view (the caller's contract).
        let ptr = unsafe { view.Value.cast::<u8>().add(delta) };
        Self { view, ptr, len }
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// The first byte, for writing (only through a writable view).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Always false: a section cannot shrink under a view on Windows.
    pub fn broken(&self) -> bool {
        false
    }
}

impl Drop for GuardedMap {
    fn drop(&mut self) {
        // SAFETY: `view` came from MapViewOfFile and is unmapped only here.
        unsafe { UnmapViewOfFile(self.view) };
    }
}

/// Faults repaired in this process: always 0 on Windows.
pub fn faults_repaired() -> usize {
    0
}
