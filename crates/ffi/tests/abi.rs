//! The C ABI called in-process (as C would, through the `extern "C"`
//! functions): a producer and a consumer handle on a real bus, frames
//! published by copy and in place, pattern checks, the handles' one-call-
//! at-a-time rule, NULL arguments, then every pixel format. One test
//! function, so setting
//! `FRAMEBUS_RUNTIME_DIR` for the process races with nothing. Runs on
//! Linux and, built for `x86_64-pc-windows-gnu`, under wine
//! (`.ci/windows-ffi.sh`).

use std::ffi::{c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::ptr;

use framebus::*;
use FramebusStatus::*;

const GRAY8: u32 = FramebusFormat::FRAMEBUS_FORMAT_GRAY8 as u32;
const GRAY16: u32 = FramebusFormat::FRAMEBUS_FORMAT_GRAY16 as u32;
const BGR8: u32 = FramebusFormat::FRAMEBUS_FORMAT_BGR8 as u32;
const RGB8: u32 = FramebusFormat::FRAMEBUS_FORMAT_RGB8 as u32;

/// Removes the bus object, the lock object and the private runtime
/// directory, also when the test fails.
struct Cleanup {
    bus: String,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/framebus.{}", self.bus));
        let _ = std::fs::remove_file(format!("/dev/shm/.framebus-lock.{}", self.bus));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string that lives
    // until the next failing call on this thread.
    unsafe { CStr::from_ptr(framebus_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

unsafe extern "C" fn fill_pattern(user: *mut c_void, slot: *mut FramebusSlot) -> c_int {
    // SAFETY: the library passes a valid slot for the duration of the call;
    // `user` is the counter the test passed.
    unsafe {
        *user.cast::<u32>() += 1;
        let s = &mut *slot;
        framebus_pattern_fill(
            s.data,
            s.len,
            s.width,
            s.height,
            s.stride,
            s.format,
            s.significant_bits,
            s.seq,
        ) as c_int
    }
}

unsafe extern "C" fn refuse(_user: *mut c_void, _slot: *mut FramebusSlot) -> c_int {
    7
}

#[test]
fn producer_and_consumer_through_the_c_abi() {
    let pid = std::process::id();
    let dir = PathBuf::from(format!("/tmp/framebus-ffi-abi-{pid}"));
    let bus = format!("ffi-abi-{pid}");
    let _cleanup = Cleanup {
        bus: bus.clone(),
        dir: dir.clone(),
    };
    // Trigger FIFOs live there on Linux; Windows has no trigger directory
    // (its triggers are named pipes) and does not read the variable.
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("create runtime dir");
    }
    std::env::set_var("FRAMEBUS_RUNTIME_DIR", &dir);
    let cbus = CString::new(bus.clone()).expect("no NUL");
    let (w, h) = (100u32, 30u32);

    // SAFETY (whole block): every pointer passed is valid as the header
    // requires: NUL-terminated strings, writable out-parameters, live
    // handles, each freed once at the end.
    unsafe {
        assert_eq!(framebus_abi_version(), FRAMEBUS_ABI_VERSION);
        let mut popts = std::mem::zeroed::<FramebusProducerOptions>();
        assert_eq!(framebus_producer_options_init(&mut popts), FRAMEBUS_OK);
        popts.max_consumers = 2;
        // One frame each, so the budget check below refuses the second.
        assert_eq!(popts.pins_per_consumer, 2);
        popts.pins_per_consumer = 1;
        let mut p = ptr::null_mut();
        assert_eq!(
            framebus_producer_create(cbus.as_ptr(), &popts, w, h, &mut p),
            FRAMEBUS_OK,
            "{}",
            last_error()
        );
        // A second producer of the same bus is refused, with the holder named.
        let mut p2 = ptr::null_mut();
        assert_eq!(
            framebus_producer_create(cbus.as_ptr(), ptr::null(), w, h, &mut p2),
            FRAMEBUS_ERROR_BUS_BUSY
        );
        assert!(p2.is_null());
        assert!(
            last_error().contains(&format!("process {pid}")),
            "{}",
            last_error()
        );

        // Options from a caller compiled against a smaller (older) struct
        // are refused, naming the sizes; nothing is attached.
        let mut small: FramebusConsumerOptions = std::mem::zeroed();
        small.size = 4;
        let mut c = ptr::null_mut();
        assert_eq!(
            framebus_consumer_attach(cbus.as_ptr(), &small, 0, &mut c),
            FRAMEBUS_ERROR_INVALID_ARGUMENT
        );
        assert!(c.is_null());
        assert!(
            last_error().contains("options.size is 4, smaller than framebus_consumer_options"),
            "{}",
            last_error()
        );

        assert_eq!(
            framebus_consumer_attach(cbus.as_ptr(), ptr::null(), 0, &mut c),
            FRAMEBUS_OK,
            "{}",
            last_error()
        );
        let mut info = FramebusBusInfo::default();
        assert_eq!(framebus_consumer_get_bus_info(c, &mut info), FRAMEBUS_OK);
        assert_eq!((info.width, info.height, info.stride), (w, h, 128));
        assert_eq!(info.format, GRAY8);
        assert_eq!(info.significant_bits, 8);
        let mut f = ptr::null_mut();
        assert_eq!(framebus_consumer_pin_newest(c, &mut f), FRAMEBUS_NO_FRAME);
        assert!(f.is_null());

        // Publish by copy: a tightly packed pattern frame for seq 1.
        let mut buf = vec![0u8; (w * h) as usize];
        assert_eq!(
            framebus_pattern_fill(buf.as_mut_ptr(), buf.len(), w, h, w, GRAY8, 0, 1),
            FRAMEBUS_OK
        );
        let mut seq = 0;
        assert_eq!(
            framebus_producer_publish(p, buf.as_ptr(), buf.len(), 0, 0, &mut seq),
            FRAMEBUS_OK,
            "{}",
            last_error()
        );
        assert_eq!(seq, 1);
        assert_eq!(
            framebus_producer_publish(p, buf.as_ptr(), 10, 0, 0, ptr::null_mut()),
            FRAMEBUS_ERROR_INVALID_ARGUMENT
        );
        assert_eq!(framebus_consumer_next_frame(c, 5000, &mut f), FRAMEBUS_OK);
        let mut fi = std::mem::zeroed::<FramebusFrameInfo>();
        assert_eq!(framebus_frame_get_info(f, &mut fi), FRAMEBUS_OK);
        assert_eq!((fi.seq, fi.width, fi.height, fi.stride), (1, w, h, 128));
        assert_eq!(fi.len, 128 * h as usize);
        let mut data = ptr::null();
        assert_eq!(framebus_frame_data(f, &mut data), FRAMEBUS_OK);
        assert_eq!(data, fi.data);
        assert_eq!(framebus_frame_verify_pattern(f), FRAMEBUS_OK);
        // Budget: one frame held, a second is refused.
        assert_eq!(
            framebus_producer_publish(p, buf.as_ptr(), buf.len(), 0, 0, ptr::null_mut()),
            FRAMEBUS_OK
        );
        let mut f2 = ptr::null_mut();
        assert_eq!(
            framebus_consumer_next_frame(c, 5000, &mut f2),
            FRAMEBUS_ERROR_PIN_BUDGET
        );
        // Frame 2 carries seq 1's pixels: the pattern check names it bad.
        assert_eq!(framebus_frame_release(f), FRAMEBUS_OK);
        assert_eq!(framebus_consumer_next_frame(c, 5000, &mut f2), FRAMEBUS_OK);
        assert_eq!(
            framebus_frame_verify_pattern(f2),
            FRAMEBUS_ERROR_PATTERN_MISMATCH
        );
        assert!(last_error().contains("frame 2 differs"), "{}", last_error());
        assert_eq!(framebus_frame_release(f2), FRAMEBUS_OK);

        // In place, through a callback; then a refusing callback.
        let mut calls = 0u32;
        assert_eq!(
            framebus_producer_fill(
                p,
                Some(fill_pattern),
                (&mut calls as *mut u32).cast(),
                &mut seq
            ),
            FRAMEBUS_OK,
            "{}",
            last_error()
        );
        assert_eq!((calls, seq), (1, 3));
        assert_eq!(framebus_consumer_next_frame(c, 5000, &mut f), FRAMEBUS_OK);
        assert_eq!(framebus_frame_verify_pattern(f), FRAMEBUS_OK);
        assert_eq!(framebus_frame_release(f), FRAMEBUS_OK);
        assert_eq!(
            framebus_producer_fill(p, Some(refuse), ptr::null_mut(), ptr::null_mut()),
            FRAMEBUS_ERROR_CALLBACK
        );
        assert!(last_error().contains("returned 7"), "{}", last_error());

        // One call at a time: while a thread waits inside next_frame, a
        // call on the same handle from here is refused, not raced.
        let c_addr = c as usize;
        let waiter = std::thread::spawn(move || {
            let mut f = ptr::null_mut();
            // (Inside the outer unsafe block.) The handle outlives the
            // thread (joined below); the frame handle is released once.
            // The main thread's get_stats may hold the handle at the moment
            // this call enters: then it is this call that is refused, and
            // it tries again (the refusal the test wants is the other one).
            let s = loop {
                let s =
                    framebus_consumer_next_frame(c_addr as *mut FramebusConsumer, 30_000, &mut f);
                if s != FRAMEBUS_ERROR_CONCURRENT_USE {
                    break s;
                }
                std::thread::yield_now();
            };
            framebus_frame_release(f);
            s
        });
        let mut stats = FramebusConsumerStats::default();
        let refused = loop {
            match framebus_consumer_get_stats(c, &mut stats) {
                FRAMEBUS_ERROR_CONCURRENT_USE => break true,
                FRAMEBUS_OK if waiter.is_finished() => break false,
                FRAMEBUS_OK => std::thread::yield_now(),
                other => panic!("get_stats: {other:?} {}", last_error()),
            }
        };
        assert!(refused, "the waiting thread returned before a refusal");
        assert!(last_error().contains("in use by another thread"));
        assert_eq!(
            framebus_producer_publish(p, buf.as_ptr(), buf.len(), 0, 0, ptr::null_mut()),
            FRAMEBUS_OK
        );
        assert_eq!(waiter.join().expect("waiter"), FRAMEBUS_OK);
        assert_eq!(framebus_consumer_get_stats(c, &mut stats), FRAMEBUS_OK);
        assert_eq!((stats.frames, stats.skipped), (4, 0), "{stats:?}");
        // Three frames published while none is taken: the newest is
        // handed out, the two before it count as skipped.
        for _ in 0..3 {
            assert_eq!(
                framebus_producer_publish(p, buf.as_ptr(), buf.len(), 0, 0, &mut seq),
                FRAMEBUS_OK
            );
        }
        assert_eq!(
            framebus_consumer_next_frame(c, 5000, &mut f),
            FRAMEBUS_OK,
            "{}",
            last_error()
        );
        assert_eq!(framebus_frame_seq(f, &mut seq), FRAMEBUS_OK);
        assert_eq!(seq, 7);
        assert_eq!(framebus_frame_release(f), FRAMEBUS_OK);
        assert_eq!(framebus_consumer_get_stats(c, &mut stats), FRAMEBUS_OK);
        assert_eq!((stats.frames, stats.skipped), (5, 2), "{stats:?}");

        // NULL arguments are errors, not crashes; NULL frees are no-ops.
        assert_eq!(
            framebus_consumer_next_frame(ptr::null_mut(), 0, &mut f),
            FRAMEBUS_ERROR_INVALID_ARGUMENT
        );
        assert_eq!(
            framebus_frame_width(ptr::null(), &mut info.width),
            FRAMEBUS_ERROR_INVALID_ARGUMENT
        );
        assert_eq!(framebus_frame_release(ptr::null_mut()), FRAMEBUS_OK);
        assert_eq!(framebus_consumer_leave(ptr::null_mut()), FRAMEBUS_OK);

        // Shutdown: publishing is refused, the bus object is gone.
        assert_eq!(framebus_consumer_leave(c), FRAMEBUS_OK);
        assert_eq!(framebus_producer_shutdown(p), FRAMEBUS_OK);
        assert_eq!(
            framebus_producer_publish(p, buf.as_ptr(), buf.len(), 0, 0, ptr::null_mut()),
            FRAMEBUS_ERROR_SHUT_DOWN
        );
        #[cfg(unix)]
        assert!(!std::path::Path::new(&format!("/dev/shm/framebus.{bus}")).exists());
        assert_eq!(framebus_producer_destroy(p), FRAMEBUS_OK);
        #[cfg(unix)]
        assert!(!std::path::Path::new(&format!("/dev/shm/.framebus-lock.{bus}")).exists());
        // Windows: the named objects have no path; the bus is gone for a
        // consumer.
        #[cfg(windows)]
        {
            assert_eq!(
                framebus_consumer_attach(cbus.as_ptr(), ptr::null(), 0, &mut c),
                FRAMEBUS_ERROR_BUS_NOT_FOUND,
                "{}",
                last_error()
            );
            assert!(c.is_null());
        }
    }
    every_format_through_the_c_abi(pid);
}

/// A producer of each multi-byte format (gray16 with 12 significant bits,
/// bgr8, rgb8) made through the C ABI: the consumer sees the format and
/// bits, frames copied in with padded rows and written in place both pass
/// the pattern check in their format, rows too short for the format and
/// bad format options are refused with messages, and capture times default
/// to `framebus_monotonic_ns`.
fn every_format_through_the_c_abi(pid: u32) {
    let (w, h) = (41u32, 9u32);
    for (format, bits, bpp, seen_bits) in [(GRAY16, 12, 2, 12), (BGR8, 0, 3, 8), (RGB8, 8, 3, 8)] {
        let bus = format!("ffi-abi-{format}-{pid}");
        let _cleanup = Cleanup {
            bus: bus.clone(),
            dir: PathBuf::from(format!("/tmp/framebus-ffi-abi-{format}-{pid}-none")),
        };
        let cbus = CString::new(bus.clone()).expect("no NUL");
        // SAFETY (whole block): as in the test above.
        unsafe {
            let mut popts = std::mem::zeroed::<FramebusProducerOptions>();
            assert_eq!(framebus_producer_options_init(&mut popts), FRAMEBUS_OK);
            assert_eq!((popts.format, popts.significant_bits), (GRAY8, 0));
            popts.format = format;
            popts.significant_bits = bits;
            let mut p = ptr::null_mut();
            assert_eq!(
                framebus_producer_create(cbus.as_ptr(), &popts, w, h, &mut p),
                FRAMEBUS_OK,
                "format {format}: {}",
                last_error()
            );
            let mut c = ptr::null_mut();
            assert_eq!(
                framebus_consumer_attach(cbus.as_ptr(), ptr::null(), 0, &mut c),
                FRAMEBUS_OK,
                "{}",
                last_error()
            );
            let mut info = FramebusBusInfo::default();
            assert_eq!(framebus_consumer_get_bus_info(c, &mut info), FRAMEBUS_OK);
            assert_eq!((info.format, info.significant_bits), (format, seen_bits));
            assert!(info.stride >= w * bpp, "stride {}", info.stride);
            let mut pinfo = FramebusBusInfo::default();
            assert_eq!(framebus_producer_get_bus_info(p, &mut pinfo), FRAMEBUS_OK);
            assert_eq!((pinfo.format, pinfo.significant_bits), (format, seen_bits));

            // By copy, from rows 5 bytes longer than the pixels.
            let src_stride = w * bpp + 5;
            let mut buf = vec![0u8; (src_stride * h) as usize];
            assert_eq!(
                framebus_pattern_fill(
                    buf.as_mut_ptr(),
                    buf.len(),
                    w,
                    h,
                    src_stride,
                    format,
                    bits,
                    1
                ),
                FRAMEBUS_OK,
                "{}",
                last_error()
            );
            let before = framebus_monotonic_ns();
            assert_eq!(
                framebus_producer_publish(
                    p,
                    buf.as_ptr(),
                    buf.len(),
                    src_stride,
                    0,
                    ptr::null_mut()
                ),
                FRAMEBUS_OK,
                "{}",
                last_error()
            );
            let after = framebus_monotonic_ns();
            let mut f = ptr::null_mut();
            assert_eq!(framebus_consumer_next_frame(c, 5000, &mut f), FRAMEBUS_OK);
            let mut fi = std::mem::zeroed::<FramebusFrameInfo>();
            assert_eq!(framebus_frame_get_info(f, &mut fi), FRAMEBUS_OK);
            assert_eq!((fi.format, fi.significant_bits), (format, seen_bits));
            assert!(
                (before..=after).contains(&fi.capture_ns),
                "capture {} not in {before}..={after}",
                fi.capture_ns
            );
            assert_eq!(
                framebus_frame_verify_pattern(f),
                FRAMEBUS_OK,
                "{}",
                last_error()
            );
            for y in 0..h as usize {
                let row = std::slice::from_raw_parts(
                    fi.data.add(y * fi.stride as usize),
                    (w * bpp) as usize,
                );
                let src = &buf[y * src_stride as usize..][..(w * bpp) as usize];
                assert_eq!(row, src, "format {format} row {y}");
            }
            assert_eq!(framebus_frame_release(f), FRAMEBUS_OK);

            // In place: the slot says the format, the pattern follows it.
            let mut calls = 0u32;
            assert_eq!(
                framebus_producer_fill(
                    p,
                    Some(fill_pattern),
                    (&mut calls as *mut u32).cast(),
                    ptr::null_mut()
                ),
                FRAMEBUS_OK,
                "{}",
                last_error()
            );
            assert_eq!(framebus_consumer_next_frame(c, 5000, &mut f), FRAMEBUS_OK);
            assert_eq!(
                framebus_frame_verify_pattern(f),
                FRAMEBUS_OK,
                "{}",
                last_error()
            );
            assert_eq!(framebus_frame_release(f), FRAMEBUS_OK);

            // Rows as long as the width in pixels are too short.
            assert_eq!(
                framebus_producer_publish(p, buf.as_ptr(), buf.len(), w, 0, ptr::null_mut()),
                FRAMEBUS_ERROR_INVALID_ARGUMENT
            );
            assert!(
                last_error().contains(&format!("{} bytes", w * bpp)),
                "{}",
                last_error()
            );
            assert_eq!(framebus_consumer_leave(c), FRAMEBUS_OK);
            assert_eq!(framebus_producer_destroy(p), FRAMEBUS_OK);
        }
    }

    // Bad format options: refused with what to use, nothing created.
    let bus = format!("ffi-abi-bad-{pid}");
    let _cleanup = Cleanup {
        bus: bus.clone(),
        dir: PathBuf::from(format!("/tmp/framebus-ffi-abi-bad-{pid}-none")),
    };
    let cbus = CString::new(bus).expect("no NUL");
    for (format, bits, says) in [
        (9, 0, "is not a framebus_format"),
        (GRAY8, 12, "use 0 (all bits) or 8"),
        (GRAY16, 17, "1 to 16"),
    ] {
        // SAFETY: valid options, string and out-pointer.
        unsafe {
            let mut popts = std::mem::zeroed::<FramebusProducerOptions>();
            assert_eq!(framebus_producer_options_init(&mut popts), FRAMEBUS_OK);
            popts.format = format;
            popts.significant_bits = bits;
            let mut p = ptr::null_mut();
            assert_eq!(
                framebus_producer_create(cbus.as_ptr(), &popts, 8, 8, &mut p),
                FRAMEBUS_ERROR_INVALID_ARGUMENT
            );
            assert!(p.is_null());
            assert!(last_error().contains(says), "{}", last_error());
        }
    }
}
