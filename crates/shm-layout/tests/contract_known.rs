//! Known answers for the header's dynamic part, the tables' words and names,
//! and the bounds of `view`: the byte contract read back through the same
//! offsets other processes (and other languages) use.

use shm_layout::header::{
    decode_trigger_dir, encode_trigger_dir, pack_latest, unpack_latest, HeaderDynamic, HeaderFixed,
    ProducerState, BGR_SEQLOCK_OFFSET, DYNAMIC_OFFSET, HEADER_SIZE, MAGIC, TRIGGER_DIR_LEN,
    TRIGGER_DIR_OFFSET,
};
use shm_layout::sync::Ordering;
use shm_layout::tables::CONSUMER_NAME_LEN;
use shm_layout::view::{header_from_bytes, read_bus, read_header, read_trigger_dir};
use shm_layout::{
    ConsumerEntry, ConsumerState, ControlView, Layout, LayoutError, LayoutRequest, Owner,
};

#[test]
fn latest_packs_seq_above_slot() {
    assert_eq!(pack_latest(1, 0), 0x1_0000);
    assert_eq!(pack_latest(0x1234, 0xABCD), 0x1234_ABCD);
    assert_eq!(pack_latest((1 << 48) - 1, 0xFFFF), u64::MAX);
    assert_eq!(unpack_latest(0), None);
    assert_eq!(unpack_latest(0x1234_ABCD), Some((0x1234, 0xABCD)));
    assert_eq!(unpack_latest(u64::MAX), Some(((1 << 48) - 1, 0xFFFF)));
    assert_eq!(unpack_latest(0x0001_0000), Some((1, 0)));
    // A slot without a frame number (a corrupt word) still unpacks.
    assert_eq!(unpack_latest(7), Some((0, 7)));
}

#[test]
fn header_dynamic_latest_and_state() {
    let d = HeaderDynamic::default();
    assert_eq!(d.latest(), None, "before the first frame");
    d.latest.store(pack_latest(42, 3), Ordering::Release);
    assert_eq!(d.latest(), Some((42, 3)));
    d.latest
        .store(pack_latest(9_000_000_000, 505), Ordering::Release);
    assert_eq!(d.latest(), Some((9_000_000_000, 505)));
    // Any word a consumer may have scribbled decodes without panicking.
    d.latest.store(0xFFFF_FFFF_FFFF_FFFF, Ordering::Release);
    assert_eq!(d.latest(), Some(((1 << 48) - 1, 0xFFFF)));

    assert_eq!(d.state(), Some(ProducerState::Starting));
    for (v, s, name) in [
        (0, ProducerState::Starting, "starting"),
        (1, ProducerState::Running, "running"),
        (2, ProducerState::Stopping, "stopping"),
    ] {
        d.producer_state.store(v, Ordering::Relaxed);
        assert_eq!(d.state(), Some(s));
        assert_eq!(ProducerState::from_u32(v), Some(s));
        assert_eq!(s as u32, v);
        assert_eq!(s.as_str(), name);
    }
    for v in [3, 4, 255, u32::MAX] {
        d.producer_state.store(v, Ordering::Relaxed);
        assert_eq!(d.state(), None, "{v}");
    }
}

#[test]
fn magic_is_the_ascii_word_framebus() {
    // Written out byte by byte, not through from_le_bytes.
    assert_eq!(MAGIC, 0x5355_4245_4d41_5246);
}

#[test]
fn consumer_states_decode_and_name() {
    let all = [
        (0, ConsumerState::Free, "free"),
        (1, ConsumerState::Claimed, "claimed"),
        (2, ConsumerState::Ready, "ready"),
        (3, ConsumerState::Connected, "connected"),
        (4, ConsumerState::Reclaiming, "reclaiming"),
    ];
    for (v, s, name) in all {
        assert_eq!(ConsumerState::from_u8(v), Some(s));
        assert_eq!(s as u8, v);
        assert_eq!(s.as_str(), name);
    }
    for v in 5..=255u8 {
        assert_eq!(ConsumerState::from_u8(v), None, "{v}");
    }
}

#[test]
fn owner_words_have_the_documented_bits() {
    let o = Owner::new(0x1234_5678, 0xAB_CDEF, ConsumerState::Connected);
    assert_eq!(o.0, 0x1234_5678_ABCD_EF03);
    assert_eq!(o.pid(), 0x1234_5678);
    assert_eq!(o.generation(), 0xAB_CDEF);
    assert_eq!(o.state_byte(), 3);
    assert_eq!(o.state(), Some(ConsumerState::Connected));
    // The generation is 24 bits: a 25th bit is dropped, never spills into
    // the pid.
    let wrapped = Owner::new(7, 0x100_0001, ConsumerState::Claimed);
    assert_eq!(wrapped.0, (7 << 32) | (1 << 8) | 1);
    assert_eq!(wrapped.generation(), 1);
    assert_eq!(
        Owner::new(7, 0xFF_FFFF, ConsumerState::Free).generation(),
        0xFF_FFFF
    );
    // with_state keeps pid and generation, only the low byte changes.
    let r = o.with_state(ConsumerState::Reclaiming);
    assert_eq!(r.0, 0x1234_5678_ABCD_EF04);
    let from_junk = Owner(0x1234_5678_ABCD_EFFF).with_state(ConsumerState::Free);
    assert_eq!(from_junk.0, 0x1234_5678_ABCD_EF00);
    // freed: pid 0, state Free, generation kept.
    assert_eq!(o.freed().0, 0x0000_0000_ABCD_EF00);
    assert_eq!(Owner(0xFF).state_byte(), 0xFF);
    assert_eq!(Owner(0xFF).state(), None);
    assert_eq!(Owner(0x105).state(), None);
    assert_eq!(Owner(0x104).state(), Some(ConsumerState::Reclaiming));
}

#[test]
fn entry_owner_reads_the_word() {
    let e = ConsumerEntry::default();
    assert_eq!(e.owner(), Owner(0));
    e.owner.store(0xDEAD_BEEF_0000_0102, Ordering::Relaxed);
    assert_eq!(e.owner(), Owner(0xDEAD_BEEF_0000_0102));
}

#[test]
fn names_are_little_endian_words_cut_at_16_bytes() {
    let e = ConsumerEntry::default();
    e.set_name("abcdefghij");
    assert_eq!(
        e.name[0].load(Ordering::Relaxed),
        u64::from_le_bytes(*b"abcdefgh")
    );
    assert_eq!(
        e.name[1].load(Ordering::Relaxed),
        u64::from_le_bytes(*b"ij\0\0\0\0\0\0")
    );
    assert_eq!(e.name(), "abcdefghij");
    // Exactly 16 bytes: kept whole, no NUL needed.
    e.set_name("0123456789abcdef");
    assert_eq!(e.name(), "0123456789abcdef");
    assert_eq!(e.name().len(), CONSUMER_NAME_LEN);
    // 17 bytes: cut to 16.
    e.set_name("0123456789abcdefX");
    assert_eq!(e.name(), "0123456789abcdef");
    // A shorter name overwrites every byte of a longer one.
    e.set_name("xy");
    assert_eq!(e.name(), "xy");
    assert_eq!(e.name[1].load(Ordering::Relaxed), 0);
    e.set_name("");
    assert_eq!(e.name(), "");
    assert_eq!(e.name[0].load(Ordering::Relaxed), 0);
    // A 4-byte char straddling byte 16 is dropped whole: 14 + 4 bytes.
    e.set_name("abcdefghijklmn\u{1F600}");
    assert_eq!(e.name(), "abcdefghijklmn");
    // 3-byte chars: 5 fit (15 bytes), the 6th is dropped.
    e.set_name("€€€€€€");
    assert_eq!(e.name(), "€€€€€");
    // Foreign bytes: invalid UTF-8 is replaced, text stops at the first NUL.
    e.name[0].store(u64::from_le_bytes(*b"ok\xFFz\0zzz"), Ordering::Relaxed);
    e.name[1].store(u64::from_le_bytes(*b"ignored!"), Ordering::Relaxed);
    assert_eq!(e.name(), "ok\u{FFFD}z");
    e.name[0].store(u64::from_le_bytes(*b"12345678"), Ordering::Relaxed);
    assert_eq!(e.name(), "12345678ignored!", "no NUL: all 16 bytes");
}

#[test]
fn reset_figures_clears_every_figure() {
    let e = ConsumerEntry::default();
    e.frames.store(1, Ordering::Relaxed);
    e.coalesced.store(2, Ordering::Relaxed);
    e.last_latency_ns.store(3, Ordering::Relaxed);
    e.last_seq.store(4, Ordering::Relaxed);
    e.max_fps_milli.store(5, Ordering::Relaxed);
    e.owner.store(6, Ordering::Relaxed);
    e.set_name("keep");
    e.reset_figures();
    assert_eq!(
        (
            e.frames.load(Ordering::Relaxed),
            e.coalesced.load(Ordering::Relaxed),
            e.last_latency_ns.load(Ordering::Relaxed),
            e.last_seq.load(Ordering::Relaxed),
            e.max_fps_milli.load(Ordering::Relaxed),
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(
        e.owner.load(Ordering::Relaxed),
        6,
        "the owner word is not a figure"
    );
    assert_eq!(e.name(), "keep");
}

#[test]
fn trigger_dir_edges() {
    let max = format!("/{}", "d".repeat(TRIGGER_DIR_LEN - 2)); // 255 bytes
    let enc = encode_trigger_dir(&max).unwrap();
    assert_eq!(enc[254], b'd');
    assert_eq!(enc[255], 0);
    assert_eq!(decode_trigger_dir(&enc), Ok(max.as_str()));
    let too_long = format!("{max}d");
    assert_eq!(
        encode_trigger_dir(&too_long),
        Err(LayoutError::TriggerDir {
            why: "it is longer than 255 bytes"
        })
    );
    assert_eq!(
        encode_trigger_dir("/a\0b"),
        Err(LayoutError::TriggerDir {
            why: "it contains a NUL byte"
        })
    );
    assert_eq!(
        encode_trigger_dir("/a/.."),
        Err(LayoutError::TriggerDir {
            why: "it contains a `..` component"
        })
    );
    assert!(encode_trigger_dir("/a/..b/...").is_ok(), "only `..` itself");
    assert_eq!(
        encode_trigger_dir("a"),
        Err(LayoutError::TriggerDir {
            why: "it is not an absolute path"
        })
    );
    // Only the first 256 bytes count: a NUL after them does not end it.
    let mut long = vec![b'/'; 300];
    long[299] = 0;
    assert_eq!(
        decode_trigger_dir(&long),
        Err(LayoutError::TriggerDir {
            why: "it is not NUL-terminated within 256 bytes"
        })
    );
    let mut ok = vec![0u8; 300];
    ok[..4].copy_from_slice(b"/run");
    assert_eq!(decode_trigger_dir(&ok), Ok("/run"));
    assert_eq!(
        decode_trigger_dir(b"/a\xFF\0"),
        Err(LayoutError::TriggerDir {
            why: "it is not UTF-8"
        })
    );
}

/// A page-aligned buffer holding a whole small bus, built by hand at the
/// documented offsets.
struct Bus {
    words: Vec<u64>,
    layout: Layout,
    /// Leading words skipped so that `base` is 4096-aligned.
    skip: usize,
}

impl Bus {
    fn new() -> Self {
        let layout = Layout::compute(LayoutRequest {
            width: 100,
            height: 10,
            max_consumers: 3,
            pins_per_consumer: 2,
            format: shm_layout::PixelFormat::Gray8,
            significant_bits: 0,
        })
        .unwrap();
        let n = layout.total_size as usize / 8 + 512;
        let words = vec![0u64; n];
        let skip = (4096 - (words.as_ptr() as usize % 4096)) % 4096 / 8;
        let mut bus = Self {
            words,
            layout,
            skip,
        };
        let h = HeaderFixed {
            magic: MAGIC,
            ..layout.header(5, 6, 0, 0, 0)
        };
        bus.bytes_mut()[..128].copy_from_slice(bytemuck::bytes_of(&h));
        let dir = encode_trigger_dir("/tmp/fb-dir").unwrap();
        let at = TRIGGER_DIR_OFFSET as usize;
        bus.bytes_mut()[at..at + TRIGGER_DIR_LEN].copy_from_slice(&dir);
        bus
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.words[self.skip..])
    }
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.words[self.skip..])
    }
    fn base(&self) -> *const u8 {
        self.bytes().as_ptr()
    }
    fn put_u64(&mut self, at: u64, v: u64) {
        let at = at as usize;
        self.bytes_mut()[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
}

#[test]
fn read_header_respects_the_mapped_length() {
    let bus = Bus::new();
    let size = bus.layout.total_size;
    let min = u64::from(HEADER_SIZE);
    // SAFETY (all calls below): `base` points to the whole bus, which is
    // larger than every `mapped_len` passed, 4096-aligned and alive.
    let ok = unsafe { read_header(bus.base(), 256, size) };
    assert_eq!(ok.map(|(_, l)| l), Ok(bus.layout));
    // A mapping one byte shorter than a header is refused although the
    // memory behind it would hold a valid header: the bound is the mapped
    // length, not what happens to be there.
    for short in [0, 1, 128, 255] {
        assert_eq!(
            unsafe { read_header(bus.base(), short, size) }.map(|(_, l)| l),
            Err(LayoutError::TooSmall {
                size: short as u64,
                min
            }),
            "mapped_len {short}"
        );
    }
    assert_eq!(
        unsafe { read_header(bus.base(), 4096, 255) }.map(|(_, l)| l),
        Err(LayoutError::TooSmall { size: 255, min })
    );
    assert_eq!(
        unsafe { read_header(bus.base(), 100, 50) }.map(|(_, l)| l),
        Err(LayoutError::TooSmall { size: 50, min })
    );
    // The object's size still bounds the layout.
    assert_eq!(
        unsafe { read_header(bus.base(), 4096, size - 1) }.map(|(_, l)| l),
        Err(LayoutError::Truncated {
            expected: size,
            actual: size - 1
        })
    );
}

#[test]
fn read_header_takes_the_magic_it_loaded() {
    let mut bus = Bus::new();
    let size = bus.layout.total_size;
    // SAFETY: as above.
    let (fixed, _) = unsafe { read_header(bus.base(), 4096, size) }.unwrap();
    assert_eq!(fixed.magic, MAGIC);
    assert_eq!(fixed.instance_id, 5);
    assert_eq!(fixed.producer_pid, 6);
    bus.put_u64(0, 0);
    // SAFETY: as above.
    assert_eq!(
        unsafe { read_header(bus.base(), 4096, size) }.map(|(_, l)| l),
        Err(LayoutError::NotReady)
    );
    bus.put_u64(0, 1);
    // SAFETY: as above.
    assert_eq!(
        unsafe { read_header(bus.base(), 4096, size) }.map(|(_, l)| l),
        Err(LayoutError::BadMagic {
            found: 1,
            expected: MAGIC
        })
    );
}

#[test]
fn read_trigger_dir_and_read_bus_respect_the_mapped_length() {
    let bus = Bus::new();
    let size = bus.layout.total_size;
    let end = (TRIGGER_DIR_OFFSET as usize + TRIGGER_DIR_LEN) as u64;
    // SAFETY (all calls below): as in read_header_respects_the_mapped_length.
    assert_eq!(
        unsafe { read_trigger_dir(bus.base(), 512) },
        Ok("/tmp/fb-dir".to_owned())
    );
    assert_eq!(
        unsafe { read_trigger_dir(bus.base(), 511) },
        Err(LayoutError::TooSmall {
            size: 511,
            min: end
        })
    );
    let (fixed, layout, dir) = unsafe { read_bus(bus.base(), 512, size) }.unwrap();
    assert_eq!(
        (fixed.instance_id, layout, dir.as_str()),
        (5, bus.layout, "/tmp/fb-dir")
    );
    // The header fits in 256 bytes but the directory does not.
    assert_eq!(
        unsafe { read_bus(bus.base(), 300, size) }.map(|_| ()),
        Err(LayoutError::TooSmall {
            size: 300,
            min: end
        })
    );
    assert_eq!(
        unsafe { read_bus(bus.base(), 100, size) }.map(|_| ()),
        Err(LayoutError::TooSmall {
            size: 100,
            min: 256
        })
    );
}

#[test]
fn header_from_bytes_bounds() {
    let bus = Bus::new();
    let size = bus.layout.total_size;
    let bytes = bus.bytes();
    assert_eq!(
        header_from_bytes(&bytes[..256], size).map(|(_, l)| l),
        Ok(bus.layout)
    );
    assert_eq!(
        header_from_bytes(&bytes[1..257], size).map(|(_, l)| l),
        Err(LayoutError::BadMagic {
            found: u64::from_le_bytes(*b"RAMEBUS\x02"),
            expected: MAGIC
        }),
        "unaligned input is read, not rejected"
    );
    assert_eq!(
        header_from_bytes(&bytes[..255], size).map(|(_, l)| l),
        Err(LayoutError::TooSmall {
            size: 255,
            min: 256
        })
    );
}

#[test]
fn control_view_finds_every_section_at_its_offset() {
    let mut bus = Bus::new();
    let l = bus.layout;
    bus.put_u64(DYNAMIC_OFFSET, pack_latest(77, 4));
    bus.put_u64(DYNAMIC_OFFSET + 8, 1234);
    bus.put_u64(BGR_SEQLOCK_OFFSET, 6);
    bus.put_u64(BGR_SEQLOCK_OFFSET + 8, 3);
    for k in 0..u64::from(l.slot_count) {
        bus.put_u64(l.slot_table_offset + k * 64, 1 << k);
        bus.put_u64(l.slot_table_offset + k * 64 + 8, 100 + k);
    }
    for k in 0..u64::from(l.max_consumers) {
        bus.put_u64(
            l.consumer_table_offset + k * shm_layout::tables::CONSUMER_ENTRY_SIZE,
            Owner::new(k as u32 + 10, 1, ConsumerState::Ready).0,
        );
        bus.put_u64(
            l.consumer_table_offset + k * shm_layout::tables::CONSUMER_ENTRY_SIZE + 32,
            200 + k,
        );
    }
    // SAFETY: `base` is 4096-aligned and the buffer holds the whole bus
    // described by `l`; it outlives the view (both live in this test).
    let view = unsafe { ControlView::new(bus.base(), l) };
    assert_eq!(view.layout(), &l);
    assert_eq!(view.dynamic().latest(), Some((77, 4)));
    assert_eq!(
        view.dynamic().frames_published.load(Ordering::Relaxed),
        1234
    );
    assert_eq!(view.bgr_seqlock().seqlock.load(Ordering::Relaxed), 6);
    assert_eq!(view.bgr_seqlock().frame_seq.load(Ordering::Relaxed), 3);
    assert_eq!(view.slots().len(), l.slot_count as usize);
    for (k, s) in view.slots().iter().enumerate() {
        assert_eq!(s.pins.load(Ordering::Relaxed), 1 << k);
        assert_eq!(s.seq.load(Ordering::Relaxed), 100 + k as u64);
    }
    assert_eq!(view.consumers().len(), l.max_consumers as usize);
    for (k, e) in view.consumers().iter().enumerate() {
        assert_eq!(e.owner().pid(), k as u32 + 10);
        assert_eq!(e.last_seq.load(Ordering::Relaxed), 200 + k as u64);
    }
}
