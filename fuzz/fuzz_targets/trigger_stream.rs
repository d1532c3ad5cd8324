//! Arbitrary bytes in arbitrary chunks through the trigger stream decoder
//! (`shm_layout::trigger::Decoder`), as a consumer's drain feeds it what a
//! hostile group member wrote into its FIFO.
//!
//! Asserted: no panic; every message handed out re-encodes to exactly the
//! 16 bytes it came from, and the messages handed out are exactly the
//! stream's 16-byte frames (counted from each `finish`) whose flags are 0
//! and slot in range, checked against the raw bytes, not through `decode`;
//! the malformed count is the other frames plus the partial tails
//! `finish` discarded; `malformed + 16 * well_formed <= bytes fed`; at most
//! 15 bytes are ever pending.
//!
//! Input: byte 0 chooses the slot check (odd: slot count `byte >> 1`;
//! even: none), then records `[len][len bytes]` each fed as one chunk;
//! `len == 255` instead calls `finish` (the pipe ran dry).
//!
//! ```sh
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run trigger_stream corpus/trigger_stream seeds/trigger_stream
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use shm_layout::trigger::{self, Decoder, Trigger, TriggerError, TRIGGER_LEN};

/// The decoder's contract, from the raw bytes alone.
fn acceptable(frame: &[u8], slot_count: Option<u32>) -> bool {
    let slot = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]);
    frame[12..16] == [0; 4] && slot_count.is_none_or(|n| slot < n)
}

struct Model {
    slot_count: Option<u32>,
    /// Bytes fed since the last finish, not yet matched to whole frames.
    tail: Vec<u8>,
    /// Frames the decoder must still hand out, in order.
    expected: Vec<[u8; TRIGGER_LEN]>,
    malformed: u64,
    well_formed: u64,
    fed: u64,
}

impl Model {
    fn feed(&mut self, chunk: &[u8]) {
        self.fed += chunk.len() as u64;
        self.tail.extend_from_slice(chunk);
        let whole = self.tail.len() / TRIGGER_LEN * TRIGGER_LEN;
        for frame in self.tail[..whole].chunks_exact(TRIGGER_LEN) {
            let frame: [u8; TRIGGER_LEN] = frame.try_into().unwrap();
            // One-message decoders agree with the contract too.
            let plain = trigger::decode(&frame);
            assert_eq!(plain.is_ok(), frame[12..16] == [0; 4]);
            if let Some(n) = self.slot_count {
                assert_eq!(
                    trigger::decode_in(&frame, n).is_ok(),
                    acceptable(&frame, Some(n))
                );
            }
            if acceptable(&frame, self.slot_count) {
                self.well_formed += 1;
                self.expected.push(frame);
            } else {
                self.malformed += 1;
            }
        }
        self.tail.drain(..whole);
    }

    fn finish(&mut self) -> bool {
        let had = !self.tail.is_empty();
        if had {
            self.malformed += 1;
            self.tail.clear();
        }
        had
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let slot_count = (cfg & 1 == 1).then_some(u32::from(cfg >> 1));
    let mut decoder = match slot_count {
        Some(n) => Decoder::with_slot_count(n),
        None => Decoder::new(),
    };
    let mut model = Model {
        slot_count,
        tail: Vec::new(),
        expected: Vec::new(),
        malformed: 0,
        well_formed: 0,
        fed: 0,
    };
    let mut got: Vec<Trigger> = Vec::new();
    while let Some((&len, after)) = rest.split_first() {
        rest = after;
        if len == 255 {
            assert_eq!(decoder.finish(), model.finish());
        } else {
            let n = usize::from(len).min(rest.len());
            let (chunk, after) = rest.split_at(n);
            rest = after;
            decoder.feed(chunk, |t| got.push(t));
            model.feed(chunk);
        }
        // Everything handed out so far, in order, re-encodes to its frame.
        assert_eq!(got.len(), model.expected.len());
        for (t, frame) in got.iter().zip(&model.expected) {
            assert_eq!(&t.encode(), frame, "{t:?} does not re-encode to its bytes");
            assert_eq!(trigger::encode(t.seq, t.slot), *frame);
        }
        got.clear();
        model.expected.clear();
        assert_eq!(decoder.well_formed(), model.well_formed);
        assert_eq!(decoder.malformed(), model.malformed);
        assert_eq!(decoder.bytes_fed(), model.fed);
        assert_eq!(decoder.pending(), model.tail.len());
        assert!(decoder.pending() < TRIGGER_LEN);
        assert!(decoder.malformed() + 16 * decoder.well_formed() <= decoder.bytes_fed());
        assert_eq!(decoder.first_error().is_some(), decoder.malformed() > 0);
        if let Some(TriggerError::Partial(k)) = decoder.first_error() {
            assert!((1..16).contains(&k));
        }
    }
    decoder.finish();
    assert!(decoder.malformed() + 16 * decoder.well_formed() <= decoder.bytes_fed());
    assert_eq!(decoder.pending(), 0);
});
