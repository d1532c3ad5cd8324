//! The security every framebus object gets on Windows: a protected DACL
//! that grants the creating user alone (`D:P(A;;GA;;;<user SID>)`), plus
//! one more SID when `FRAMEBUS_WINDOWS_SHARE_SID` names one (the Windows
//! form of `--group`: a group SID such as a local group's, whose members'
//! processes may then attach; with `FRAMEBUS_WINDOWS_NAMESPACE=Global` for
//! processes of other logon sessions).

use std::io;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, TokenUser, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use crate::windows::wide::{last_error, wide};

/// The variable naming one more SID that may open a bus's objects.
pub const SHARE_SID_VAR: &str = "FRAMEBUS_WINDOWS_SHARE_SID";

/// The variable choosing the kernel object namespace: `Local` (default,
/// this logon session) or `Global` (every session; creating objects there
/// needs the SeCreateGlobalPrivilege that services and administrators have).
pub const NAMESPACE_VAR: &str = "FRAMEBUS_WINDOWS_NAMESPACE";

/// `Local` or `Global`, from [`NAMESPACE_VAR`] (anything else is `Local`,
/// with a warning).
pub(crate) fn namespace() -> &'static str {
    static NS: OnceLock<&'static str> = OnceLock::new();
    NS.get_or_init(|| match std::env::var(NAMESPACE_VAR).as_deref() {
        Ok("Global") | Ok("global") => "Global",
        Ok("Local") | Ok("local") | Err(_) => "Local",
        Ok(other) => {
            tracing::warn!("{NAMESPACE_VAR}={other:?} is neither Local nor Global: using Local");
            "Local"
        }
    })
}

/// This process's user SID as a string (`S-1-5-21-...`), read once.
pub fn user_sid() -> io::Result<String> {
    static SID: OnceLock<String> = OnceLock::new();
    if let Some(s) = SID.get() {
        return Ok(s.clone());
    }
    let s = read_user_sid()?;
    Ok(SID.get_or_init(|| s).clone())
}

fn read_user_sid() -> io::Result<String> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of this process is always valid; `token`
    // receives a new handle, closed below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(last_error());
    }
    let mut buf = vec![0u64; 64]; // 512 bytes, 8-aligned: TOKEN_USER and its SID
    let mut len = 0u32;
    // SAFETY: `buf` is writable for the length given; `token` is valid.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenUser,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as u32,
            &mut len,
        )
    };
    let err = last_error();
    // SAFETY: `token` was opened above and is closed once.
    unsafe { CloseHandle(token) };
    if ok == 0 {
        return Err(err);
    }
    // SAFETY: GetTokenInformation(TokenUser) filled `buf` with a TOKEN_USER
    // whose SID pointer points into `buf`; the buffer is 8-aligned.
    let sid = unsafe { (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is a valid SID inside `buf`; `text` receives a
    // LocalAlloc'd string, freed below.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return Err(last_error());
    }
    // SAFETY: `text` is a NUL-terminated UTF-16 string from the call above.
    let s = unsafe {
        let mut n = 0;
        while *text.add(n) != 0 {
            n += 1;
        }
        String::from_utf16_lossy(std::slice::from_raw_parts(text, n))
    };
    // SAFETY: `text` was allocated by ConvertSidToStringSidW with LocalAlloc.
    unsafe { LocalFree(text.cast()) };
    Ok(s)
}

/// Whether `sid` looks like a SID string (`S-1-...`, digits and dashes), so
/// nothing else can be spliced into the SDDL.
fn is_sid(sid: &str) -> bool {
    sid.starts_with("S-1-") && sid[2..].chars().all(|c| c.is_ascii_digit() || c == '-')
}

/// The SDDL of every framebus object: this user only, or this user and the
/// SID of [`SHARE_SID_VAR`].
pub fn object_sddl() -> io::Result<String> {
    sddl_for(&user_sid()?, std::env::var(SHARE_SID_VAR).ok().as_deref())
}

/// The SDDL granting `user` and, if given, `share` (both SID strings).
fn sddl_for(user: &str, share: Option<&str>) -> io::Result<String> {
    let mut sddl = format!("D:P(A;;GA;;;{user})");
    if let Some(share) = share.map(str::trim) {
        if !is_sid(share) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{SHARE_SID_VAR}={share:?} is not a SID (S-1-...); see `whoami /groups`"),
            ));
        }
        sddl.push_str(&format!("(A;;GA;;;{share})"));
    }
    Ok(sddl)
}

/// Security attributes holding a self-relative security descriptor, freed
/// on drop. Pass [`ObjectSecurity::attributes`] to a `Create*` call.
pub(crate) struct ObjectSecurity {
    attrs: SECURITY_ATTRIBUTES,
}

impl ObjectSecurity {
    /// The attributes of [`object_sddl`].
    pub(crate) fn new() -> io::Result<Self> {
        let w = wide(&object_sddl()?)?;
        let mut sd: *mut core::ffi::c_void = std::ptr::null_mut();
        // SAFETY: `w` is a NUL-terminated SDDL string; `sd` receives a
        // LocalAlloc'd descriptor, freed in Drop.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                w.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(last_error());
        }
        Ok(Self {
            attrs: SECURITY_ATTRIBUTES {
                nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
                lpSecurityDescriptor: sd,
                bInheritHandle: 0,
            },
        })
    }

    /// For the `lpSecurityAttributes` argument (valid while `self` lives).
    pub(crate) fn attributes(&self) -> *const SECURITY_ATTRIBUTES {
        &self.attrs
    }
}

impl Drop for ObjectSecurity {
    fn drop(&mut self) {
        // SAFETY: the descriptor was allocated by the SDDL conversion with
        // LocalAlloc and is freed once.
        unsafe { LocalFree(self.attrs.lpSecurityDescriptor) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sddl_grants_the_user_and_only_a_checked_share_sid() {
        assert_eq!(
            sddl_for("S-1-5-21-1-2-3-1000", None).unwrap(),
            "D:P(A;;GA;;;S-1-5-21-1-2-3-1000)"
        );
        assert_eq!(
            sddl_for("S-1-5-21-1-2-3-1000", Some(" S-1-5-32-545 ")).unwrap(),
            "D:P(A;;GA;;;S-1-5-21-1-2-3-1000)(A;;GA;;;S-1-5-32-545)"
        );
        for bad in ["WD", "S-1-5)(A;;GA;;;WD", "", "S-1-x"] {
            assert!(sddl_for("S-1-5-21-1", Some(bad)).is_err(), "{bad:?}");
        }
        let me = user_sid().unwrap();
        assert!(is_sid(&me), "{me}");
        let sddl = object_sddl().unwrap();
        assert!(sddl.starts_with(&format!("D:P(A;;GA;;;{me})")), "{sddl}");
        let sec = ObjectSecurity::new().unwrap();
        assert!(!sec.attributes().is_null());
    }
}
