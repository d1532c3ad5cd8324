//! The Windows module against the real kernel objects (run under wine in
//! CI): tokens, sections and views, and trigger pipes.

use std::io::Write;
use std::time::Duration;

use shm_layout::trigger::encode;

use super::*;
use crate::{DrainCounts, FifoOpen, Readiness, TokenId, TriggerWrite};

fn unique(what: &str) -> String {
    format!("/framebus.wintest-{what}-{}", std::process::id())
}

fn sized(name: &str, size: u64) -> BusHandle {
    let bus = create_shm(name, 0o600, None).unwrap().expect("create");
    size_shm(&bus, size).unwrap();
    bus
}

#[test]
fn tokens_are_per_open_and_tested_without_taking_them() {
    let name = unique("tokens");
    let a = sized(&name, 65536);
    let (b, size) = open_shm(&name).unwrap().expect("open");
    assert_eq!(size, 65536);
    let (ro, _) = open_shm_read(&name).unwrap().expect("open read-only");
    let c3 = TokenId::Consumer(3);
    assert!(!token_held(&ro, c3).unwrap());
    assert!(try_hold_token(&a, c3).unwrap());
    assert!(
        try_hold_token(&a, c3).unwrap(),
        "re-taking one's own is fine"
    );
    assert!(token_held(&ro, c3).unwrap(), "seen from a read-only open");
    assert!(token_held(&b, c3).unwrap());
    assert!(!token_held(&a, c3).unwrap(), "one's own is no conflict");
    assert!(!try_hold_token(&b, c3).unwrap(), "a second open is refused");
    assert!(!token_held(&ro, TokenId::Consumer(2)).unwrap());
    assert!(try_hold_token(&b, TokenId::Producer).unwrap());
    assert!(token_held(&ro, TokenId::Producer).unwrap());
    release_token(&a, c3).unwrap();
    assert!(!token_held(&ro, c3).unwrap());
    assert!(try_hold_token(&b, c3).unwrap());
    drop(b); // closing an open drops its tokens
    assert!(!token_held(&ro, c3).unwrap());
    assert!(!token_held(&ro, TokenId::Producer).unwrap());
    assert!(try_hold_token(&a, c3).unwrap());
    let dup = a.try_clone().unwrap();
    drop(a);
    assert!(token_held(&ro, c3).unwrap(), "the duplicate keeps it");
    drop(dup);
    assert!(!token_held(&ro, c3).unwrap());
}

#[test]
fn a_new_instance_never_reuses_one_still_open_and_readers_find_the_live_one() {
    let name = unique("instances");
    let first = sized(&name, 65536);
    assert!(try_hold_token(&first, TokenId::Producer).unwrap());
    let (reader, _) = open_shm(&name).unwrap().expect("open");
    drop(first); // the producer is gone; the reader still maps instance 0
    let second = sized(&name, 2 * 65536);
    assert!(try_hold_token(&second, TokenId::Producer).unwrap());
    assert_eq!(
        object_size(&reader).unwrap(),
        65536,
        "the old one is untouched"
    );
    let (found, size) = open_shm(&name).unwrap().expect("open again");
    assert_eq!(size, 2 * 65536, "the instance with a live producer wins");
    assert!(token_held(&found, TokenId::Producer).unwrap());
}

#[test]
fn views_share_memory_and_read_at_reads_it() {
    let name = unique("views");
    let bus = sized(&name, 3 * 65536);
    let rw = map_rw(&bus, 3 * 65536).unwrap();
    // SAFETY: the view is 3 * 65536 writable bytes; nobody else uses it.
    unsafe { rw.as_mut_ptr().add(70000).write(42) };
    let ro = map_ro(&bus, 69632, 8192).unwrap();
    // SAFETY: offset 70000 - 69632 = 368 is inside the 8192-byte view.
    assert_eq!(unsafe { ro.as_ptr().add(368).read() }, 42);
    let mut buf = [0u8; 4];
    assert_eq!(read_at(&bus, &mut buf, 69999).unwrap(), 4);
    assert_eq!(buf, [0, 42, 0, 0]);
    assert_eq!(read_at(&bus, &mut buf, 3 * 65536 - 2).unwrap(), 2);
    assert!(map_ro(&bus, 3 * 65536 - 10, 20).is_err(), "past the end");
    let (read_only, _) = open_shm_read(&name).unwrap().expect("open");
    assert!(
        map_rw(&read_only, 4096).is_err(),
        "no writable view of a read-only open"
    );
}

#[test]
fn the_bus_lock_is_exclusive_until_dropped() {
    let bus =
        shm_layout::naming::BusName::new(&format!("wintest-lock-{}", std::process::id())).unwrap();
    let held = lock_bus(&bus).unwrap().expect("free");
    assert!(lock_bus(&bus).unwrap().is_none());
    drop(held);
    assert!(lock_bus(&bus).unwrap().is_some());
}

#[test]
fn trigger_pipes_carry_messages_count_full_and_see_the_writer_go() {
    let path = runtime_root()
        .join(format!("wintest-{}", std::process::id()))
        .join("consumer-0-1.fifo");
    let pipe = TriggerPipe::create(&path, 0o600).unwrap_or_else(|e| panic!("create: {e:?}"));
    assert!(
        matches!(
            TriggerPipe::create(&path, 0o600),
            Err(crate::FifoError::Occupied(_))
        ),
        "a second pipe of the same name is refused"
    );
    assert!(pipe.drain().unwrap().no_writer(), "no writer yet");
    assert_eq!(
        pipe.wait(Duration::from_millis(10)).unwrap(),
        Readiness::Timeout
    );
    let FifoOpen::Open(mut w) = open_fifo_writer(&path, None) else {
        panic!("open writer");
    };
    assert!(
        matches!(open_fifo_writer(&path, None), FifoOpen::Foreign(_)),
        "one writer only"
    );
    assert_eq!(write_trigger(&mut w, &encode(1, 0)), TriggerWrite::Sent);
    assert_eq!(write_trigger(&mut w, &encode(2, 1)), TriggerWrite::Sent);
    assert_eq!(
        pipe.wait(Duration::from_secs(5)).unwrap(),
        Readiness::Readable
    );
    let d = pipe.drain_checked(1).unwrap();
    assert!(!d.no_writer());
    assert_eq!(
        d.counts(),
        DrainCounts {
            triggers: 1,
            malformed: 1
        }
    );
    // Fill the pipe: writes are whole or nothing, never blocking.
    let mut full = 0;
    let mut sent = 0;
    for i in 0..10_000u64 {
        match write_trigger(&mut w, &encode(i, 0)) {
            TriggerWrite::Sent => sent += 1,
            TriggerWrite::Full => {
                full += 1;
                break;
            }
            TriggerWrite::Gone => panic!("the reader is here"),
        }
    }
    assert_eq!(full, 1, "a full pipe is reported as Full");
    assert_eq!(
        pipe.drain().unwrap().counts().triggers,
        sent,
        "every whole message arrives"
    );
    w.flush().unwrap();
    drop(w);
    assert_eq!(
        pipe.wait(Duration::from_secs(5)).unwrap(),
        Readiness::HungUp
    );
    assert!(pipe.drain().unwrap().no_writer(), "the writer is gone");
}

#[test]
fn a_write_to_a_gone_reader_says_gone() {
    let path = runtime_root()
        .join(format!("wintest-gone-{}", std::process::id()))
        .join("consumer-1-1.fifo");
    let pipe = TriggerPipe::create(&path, 0o600).unwrap_or_else(|e| panic!("create: {e:?}"));
    let FifoOpen::Open(mut w) = open_fifo_writer(&path, None) else {
        panic!("open writer");
    };
    assert_eq!(write_trigger(&mut w, &encode(1, 0)), TriggerWrite::Sent);
    drop(pipe);
    assert_eq!(write_trigger(&mut w, &encode(2, 0)), TriggerWrite::Gone);
    assert!(matches!(open_fifo_writer(&path, None), FifoOpen::NoReader));
}

/// A pipe whose pending read was issued by a thread that has ended since
/// (Windows cancels that read) goes on working from another thread: no
/// error, no message lost. (Under wine this rarely hits the cancelled
/// read; `crates/ffi/tests/abi.rs`, whose waiting thread ends between
/// frames, failed 5 runs of 8 with "I/O operation aborted (os error 995)"
/// before the pipe issued such a read again.)
#[test]
fn a_read_left_pending_by_an_ended_thread_is_issued_again() {
    let path = runtime_root()
        .join(format!("wintest-abort-{}", std::process::id()))
        .join("consumer-0-1.fifo");
    let pipe = TriggerPipe::create(&path, 0o600).unwrap_or_else(|e| panic!("create: {e:?}"));
    let FifoOpen::Open(mut w) = open_fifo_writer(&path, None) else {
        panic!("open writer");
    };
    assert_eq!(write_trigger(&mut w, &encode(1, 0)), TriggerWrite::Sent);
    // A thread reads the first message and leaves a read pending, then ends.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(
                pipe.wait(Duration::from_secs(5)).unwrap(),
                Readiness::Readable
            );
            assert_eq!(pipe.drain().unwrap().counts().triggers, 1);
            // Waiting with nothing there leaves this thread's read pending.
            assert_eq!(
                pipe.wait(Duration::from_millis(20)).unwrap(),
                Readiness::Timeout
            );
        });
    });
    assert_eq!(write_trigger(&mut w, &encode(2, 0)), TriggerWrite::Sent);
    assert_eq!(
        pipe.wait(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("wait after the reading thread ended: {e:?}")),
        Readiness::Readable
    );
    let d = pipe
        .drain()
        .unwrap_or_else(|e| panic!("drain after the reading thread ended: {e:?}"));
    assert_eq!(d.counts().triggers, 1, "the second message arrives");
}

#[test]
fn pipe_names_join_the_path_with_dots() {
    assert_eq!(
        pipe_name(std::path::Path::new(
            r"\\.\pipe\framebus\cam0\consumer-3-7.fifo"
        )),
        r"\\.\pipe\framebus.cam0.consumer-3-7.fifo"
    );
}

#[test]
fn the_monotonic_clock_moves_forward() {
    let a = monotonic_ns();
    std::thread::sleep(Duration::from_millis(2));
    let b = monotonic_ns();
    assert!(b > a);
    assert!(realtime_ns() > 1_600_000_000_000_000_000);
    assert!(!ForkGuard::new().in_child());
}

#[test]
fn objects_get_a_dacl_for_this_user_only() {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Security::Authorization::{
        ConvertSecurityDescriptorToStringSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
        SE_KERNEL_OBJECT,
    };
    use windows_sys::Win32::Security::DACL_SECURITY_INFORMATION;
    let name = unique("dacl");
    let bus = sized(&name, 65536);
    let section = bus.section_handle_for_tests().as_raw_handle();
    let mut sd: *mut core::ffi::c_void = std::ptr::null_mut();
    // SAFETY: a valid section handle; `sd` receives a LocalAlloc'd
    // descriptor (leaked: a test).
    let r = unsafe {
        GetSecurityInfo(
            section,
            SE_KERNEL_OBJECT,
            DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut sd,
        )
    };
    assert_eq!(r, 0, "GetSecurityInfo");
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sd` is the descriptor returned above.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            std::ptr::null_mut(),
        )
    };
    assert_ne!(ok, 0);
    // SAFETY: a NUL-terminated string from the call above.
    let sddl = unsafe {
        let mut n = 0;
        while *text.add(n) != 0 {
            n += 1;
        }
        String::from_utf16_lossy(std::slice::from_raw_parts(text, n))
    };
    let me = user_sid().unwrap();
    assert!(sddl.contains(&me), "the creating user is granted: {sddl}");
    assert!(!sddl.contains(";WD)"), "not everyone: {sddl}");
    assert!(
        sddl.starts_with("D:P"),
        "protected (nothing inherited): {sddl}"
    );
}

#[test]
fn a_file_token_is_held_until_dropped_and_refused_to_a_second_holder() {
    let lock = std::env::temp_dir().join(format!("wintest-{}.lock", std::process::id()));
    assert!(!file_token_held(&lock));
    let held = hold_file_token(&lock).unwrap().expect("free");
    assert!(file_token_held(&lock));
    assert!(
        hold_file_token(&lock).unwrap().is_none(),
        "a second holder is refused"
    );
    drop(held);
    assert!(!file_token_held(&lock), "dropped: let go");
    assert!(!lock.exists(), "no file is made on Windows");
    assert!(state_root().ends_with("framebus"));
}
