//! The bus object as a named file mapping backed by the paging file, its
//! views, the liveness tokens and the producer's bus lock.
//!
//! Names (in the caller's logon session, `Local\`, or in `Global\` with
//! `FRAMEBUS_WINDOWS_NAMESPACE=Global`):
//! - `Local\framebus.NAME#g`: instance `g` of bus NAME (see the module
//!   docs of `windows/` for why instances are numbered);
//! - `Local\framebus.NAME#g.t<k>`: liveness token `k` of that instance
//!   ([`crate::TokenId::offset`]: 0 the producer, `1 + i` consumer entry i);
//! - `Local\framebus-lock.NAME`: the producer lock of bus NAME.
//!
//! A token is a named event that exists exactly while its holder keeps its
//! handle open: the kernel destroys a named object when its last handle
//! closes, and closes every handle of a process that ends, however it ends.
//! Taking a token creates the event and fails if it exists; testing opens it
//! and closes it at once. Nothing in it is a pid, and a handle is never
//! inherited by a child (framebus creates none inheritable).

use std::collections::HashMap;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::{Arc, Mutex, OnceLock};

use shm_layout::naming::BusName;
use windows_sys::Win32::Foundation::{
    ERROR_ALREADY_EXISTS, ERROR_FILE_NOT_FOUND, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::SYNCHRONIZE;
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
    FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, PAGE_READWRITE,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};
use windows_sys::Win32::System::Threading::{CreateEventW, OpenEventW};

use crate::windows::fault::GuardedMap;
use crate::windows::security::{namespace, ObjectSecurity};
use crate::windows::wide::{last_code, last_error, wide};
use crate::TokenId;

/// How many instances of one bus may exist at once: the live one and those
/// that processes which have not noticed a restart still map.
pub const MAX_INSTANCES: u32 = 16;

/// The section of one bus instance.
#[derive(Debug)]
struct Section {
    handle: OwnedHandle,
    /// `Local\framebus.NAME#g`.
    name: String,
    size: u64,
}

/// An open of the bus object: the section handle (made by
/// [`size_shm`] for a producer, found by [`open_shm`] for everyone else) and
/// the liveness tokens held through it.
#[derive(Debug)]
pub struct BusHandle {
    /// `framebus.NAME`.
    base: String,
    section: OnceLock<Section>,
    /// Shared by duplicates, as a duplicated descriptor shares its open's
    /// locks on Linux.
    tokens: Arc<Mutex<HashMap<i64, OwnedHandle>>>,
    writable: bool,
}

/// A borrowed [`BusHandle`].
pub type BusRef<'a> = &'a BusHandle;

/// Borrows a [`BusHandle`].
pub fn bus_ref(bus: &BusHandle) -> BusRef<'_> {
    bus
}

impl BusHandle {
    /// A second handle of the same open: the same section and tokens.
    pub fn try_clone(&self) -> io::Result<Self> {
        let s = self.section()?;
        let section = OnceLock::new();
        let _ = section.set(Section {
            handle: s.handle.try_clone()?,
            name: s.name.clone(),
            size: s.size,
        });
        Ok(Self {
            base: self.base.clone(),
            section,
            tokens: Arc::clone(&self.tokens),
            writable: self.writable,
        })
    }

    /// The section handle (tests read its security).
    #[cfg(test)]
    pub(crate) fn section_handle_for_tests(&self) -> &OwnedHandle {
        &self.section.get().expect("sized").handle
    }

    fn section(&self) -> io::Result<&Section> {
        self.section
            .get()
            .ok_or_else(|| io::Error::other("the bus object has no memory yet (size_shm first)"))
    }
}

fn base_name(shm_name: &str) -> String {
    shm_name.trim_start_matches('/').to_owned()
}

fn instance_name(base: &str, g: u32) -> String {
    format!("{}\\{base}#{g}", namespace())
}

fn token_name(section: &str, id: TokenId) -> String {
    format!("{section}.t{}", id.offset())
}

/// Takes ownership of a handle a Win32 call returned, or its error.
fn owned(h: HANDLE) -> io::Result<OwnedHandle> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        Err(last_error())
    } else {
        // SAFETY: `h` is a valid handle just returned to us, owned by nobody
        // else.
        Ok(unsafe { OwnedHandle::from_raw_handle(h) })
    }
}

/// Prepares a new bus object named `shm_name` (`/framebus.NAME`). On
/// Windows the memory is made by [`size_shm`], which needs the size; `mode`
/// and `group` do not apply: every object gets the DACL of
/// `security::object_sddl` (this user, plus `FRAMEBUS_WINDOWS_SHARE_SID`).
/// Never `Ok(None)`: earlier instances never block a new one.
pub fn create_shm(
    shm_name: &str,
    _mode: u32,
    _group: Option<u32>,
) -> io::Result<Option<BusHandle>> {
    Ok(Some(BusHandle {
        base: base_name(shm_name),
        section: OnceLock::new(),
        tokens: Arc::new(Mutex::new(HashMap::new())),
        writable: true,
    }))
}

/// Makes the bus's memory, `size` bytes of zeroes, under the first free
/// instance name. The caller holds the bus lock, so no other producer of
/// this bus is making one at the same time.
pub fn size_shm(bus: &BusHandle, size: u64) -> io::Result<()> {
    if bus.section.get().is_some() {
        return Err(io::Error::other("the bus object already has its memory"));
    }
    let security = ObjectSecurity::new()?;
    for g in 0..MAX_INSTANCES {
        let name = instance_name(&bus.base, g);
        let w = wide(&name)?;
        // SAFETY: `w` is a NUL-terminated UTF-16 string and `security` a
        // valid SECURITY_ATTRIBUTES, both outliving the call.
        let h = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                security.attributes(),
                PAGE_READWRITE,
                (size >> 32) as u32,
                size as u32,
                w.as_ptr(),
            )
        };
        let existed = last_code() == ERROR_ALREADY_EXISTS;
        let handle = owned(h)?;
        if existed {
            // An older instance someone still maps: leave it alone.
            drop(handle);
            continue;
        }
        let _ = bus.section.set(Section { handle, name, size });
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{MAX_INSTANCES} earlier instances of this bus are still open in processes that did not notice their producer stopped: stop those consumers"
    )))
}

/// Opens the bus's live instance for reading and writing: the one whose
/// producer token is held, else the newest that exists.
pub fn open_shm(shm_name: &str) -> io::Result<Option<(BusHandle, u64)>> {
    open_with(shm_name, true)
}

/// Opens the bus's live instance read-only (see [`open_shm`]).
pub fn open_shm_read(shm_name: &str) -> io::Result<Option<(BusHandle, u64)>> {
    open_with(shm_name, false)
}

fn open_with(shm_name: &str, writable: bool) -> io::Result<Option<(BusHandle, u64)>> {
    let base = base_name(shm_name);
    let access = if writable {
        FILE_MAP_READ | FILE_MAP_WRITE
    } else {
        FILE_MAP_READ
    };
    let mut newest: Option<(OwnedHandle, String)> = None;
    for g in 0..MAX_INSTANCES {
        let name = instance_name(&base, g);
        let w = wide(&name)?;
        // SAFETY: `w` is a NUL-terminated UTF-16 string that outlives the call.
        let h = unsafe { OpenFileMappingW(access, 0, w.as_ptr()) };
        if h.is_null() {
            if last_code() == ERROR_FILE_NOT_FOUND {
                continue;
            }
            return Err(last_error());
        }
        let handle = owned(h)?;
        if named_object_exists(&token_name(&name, TokenId::Producer))? {
            newest = Some((handle, name));
            break;
        }
        newest = Some((handle, name));
    }
    let Some((handle, name)) = newest else {
        return Ok(None);
    };
    let size = section_size(&handle)?;
    let bus = BusHandle {
        base,
        section: OnceLock::new(),
        tokens: Arc::new(Mutex::new(HashMap::new())),
        writable,
    };
    let _ = bus.section.set(Section { handle, name, size });
    Ok(Some((bus, size)))
}

/// The size of a section: its whole view's region size.
fn section_size(section: &OwnedHandle) -> io::Result<u64> {
    // SAFETY: the handle is a valid section; mapping 0 bytes maps it whole.
    let view = unsafe { MapViewOfFile(section.as_raw_handle(), FILE_MAP_READ, 0, 0, 0) };
    if view.Value.is_null() {
        return Err(last_error());
    }
    // SAFETY: MEMORY_BASIC_INFORMATION is a plain C struct of integers and
    // pointers, for which all-zero bytes are a valid value.
    let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is writable and as large as the length passed; the
    // address is the view just mapped.
    let got = unsafe {
        VirtualQuery(
            view.Value,
            &mut info,
            std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
        )
    };
    // SAFETY: the view was mapped above and is used by nothing else.
    unsafe { UnmapViewOfFile(view) };
    if got == 0 {
        return Err(last_error());
    }
    Ok(info.RegionSize as u64)
}

/// The size of the bus object (sections never shrink on Windows).
pub fn object_size(bus: &BusHandle) -> io::Result<u64> {
    Ok(bus.section()?.size)
}

/// Nothing to do on Windows: a named object disappears when its last
/// handle closes, and a new producer uses a fresh instance name.
pub fn unlink_shm(_shm_name: &str) -> io::Result<()> {
    Ok(())
}

fn granularity() -> u64 {
    static G: OnceLock<u64> = OnceLock::new();
    *G.get_or_init(|| {
        // SAFETY: SYSTEM_INFO is a plain C struct of integers and pointers,
        // for which all-zero bytes are a valid value.
        let mut info: SYSTEM_INFO = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable SYSTEM_INFO.
        unsafe { GetSystemInfo(&mut info) };
        u64::from(info.dwAllocationGranularity).max(4096)
    })
}

fn map(bus: &BusHandle, offset: u64, len: u64, writable: bool) -> io::Result<GuardedMap> {
    let section = bus.section()?;
    if writable && !bus.writable {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the bus was opened read-only",
        ));
    }
    let end = offset
        .checked_add(len)
        .filter(|&e| e <= section.size)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a view past the end of the bus object",
            )
        })?;
    let start = offset - offset % granularity();
    let delta = (offset - start) as usize;
    let view_len = usize::try_from(end - start)
        .map_err(|_| io::Error::other("bus larger than the address space"))?;
    let access = if writable {
        FILE_MAP_READ | FILE_MAP_WRITE
    } else {
        FILE_MAP_READ
    };
    // SAFETY: the section handle is valid; `start` is a multiple of the
    // allocation granularity and `start + view_len` is inside the section.
    let view = unsafe {
        MapViewOfFile(
            section.handle.as_raw_handle(),
            access,
            (start >> 32) as u32,
            start as u32,
            view_len,
        )
    };
    if view.Value.is_null() {
        return Err(last_error());
    }
    // SAFETY: the view covers `delta + len` bytes and is unmapped only by
    // the GuardedMap.
    Ok(unsafe { GuardedMap::from_view(view, delta, len as usize) })
}

/// Maps the first `len` bytes for reading and writing (the producer).
pub fn map_rw_populated(bus: &BusHandle, len: u64) -> io::Result<GuardedMap> {
    map(bus, 0, len, true)
}

/// Maps the first `len` bytes for reading and writing.
pub fn map_rw(bus: &BusHandle, len: u64) -> io::Result<GuardedMap> {
    map(bus, 0, len, true)
}

/// Maps `len` bytes at `offset` read-only: a write through it faults.
pub fn map_ro(bus: &BusHandle, offset: u64, len: u64) -> io::Result<GuardedMap> {
    map(bus, offset, len, false)
}

/// The owner of the object: this user (see [`crate::my_uid`]).
pub fn owner_uid(_bus: &BusHandle) -> io::Result<u32> {
    Ok(crate::my_uid())
}

/// Reads up to `buf.len()` bytes of the object at `offset`; fewer if the
/// object is shorter.
pub fn read_at(bus: &BusHandle, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let size = bus.section()?.size;
    if offset >= size {
        return Ok(0);
    }
    let n = (buf.len() as u64).min(size - offset);
    let view = map(bus, offset, n, false)?;
    // SAFETY: the view holds `n` readable bytes; `buf` has at least `n`.
    unsafe { std::ptr::copy_nonoverlapping(view.as_ptr(), buf.as_mut_ptr(), n as usize) };
    Ok(n as usize)
}

/// Whether a named kernel object of this name exists (held open by
/// someone). Opening it holds it for a moment; the handle closes at once.
pub(crate) fn named_object_exists(name: &str) -> io::Result<bool> {
    let w = wide(name)?;
    // SAFETY: `w` is a NUL-terminated UTF-16 string that outlives the call.
    let h = unsafe { OpenEventW(SYNCHRONIZE, 0, w.as_ptr()) };
    if h.is_null() {
        return match last_code() {
            ERROR_FILE_NOT_FOUND => Ok(false),
            // It exists but is not ours to open (or is another kind of
            // object): someone holds the name.
            _ => Ok(true),
        };
    }
    drop(owned(h)?);
    Ok(true)
}

/// Creates the named event `name`; `Ok(None)` if it exists already.
pub(crate) fn create_named(name: &str) -> io::Result<Option<OwnedHandle>> {
    let w = wide(name)?;
    let security = ObjectSecurity::new()?;
    // SAFETY: `w` is a NUL-terminated UTF-16 string and `security` a valid
    // SECURITY_ATTRIBUTES, both outliving the call; manual reset, not
    // signalled.
    let h = unsafe { CreateEventW(security.attributes(), 1, 0, w.as_ptr()) };
    let existed = last_code() == ERROR_ALREADY_EXISTS;
    let handle = owned(h)?;
    if existed {
        drop(handle);
        return Ok(None);
    }
    Ok(Some(handle))
}

/// Takes token `id` through this open without blocking. `Ok(false)` if
/// someone else holds it (or is testing it at this moment: try again).
pub fn try_hold_token(bus: BusRef<'_>, id: TokenId) -> io::Result<bool> {
    let name = token_name(&bus.section()?.name, id);
    let mut tokens = bus
        .tokens
        .lock()
        .map_err(|_| io::Error::other("token table poisoned"))?;
    if tokens.contains_key(&id.offset()) {
        return Ok(true);
    }
    match create_named(&name)? {
        Some(h) => {
            tokens.insert(id.offset(), h);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Lets token `id` go (closes this open's handle of it).
pub fn release_token(bus: BusRef<'_>, id: TokenId) -> io::Result<()> {
    bus.tokens
        .lock()
        .map_err(|_| io::Error::other("token table poisoned"))?
        .remove(&id.offset());
    Ok(())
}

/// Whether another open holds token `id` (this open's own is no conflict).
pub fn token_held(bus: BusRef<'_>, id: TokenId) -> io::Result<bool> {
    if bus
        .tokens
        .lock()
        .map_err(|_| io::Error::other("token table poisoned"))?
        .contains_key(&id.offset())
    {
        return Ok(false);
    }
    named_object_exists(&token_name(&bus.section()?.name, id))
}

/// The producer lock of one bus: a named event that exists while the
/// producer runs (see [`lock_bus`]).
#[derive(Debug)]
pub struct BusLock {
    _event: OwnedHandle,
}

/// Takes bus `bus`'s producer lock without blocking: `Ok(None)` if another
/// process holds it. Released when the holder ends, however it ends.
pub fn lock_bus(bus: &BusName) -> io::Result<Option<BusLock>> {
    let name = format!("{}\\framebus-lock.{}", namespace(), bus.as_str());
    Ok(create_named(&name)?.map(|h| BusLock { _event: h }))
}
