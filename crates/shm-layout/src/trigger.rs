//! Trigger messages: the 16 bytes the producer writes into each consumer's
//! FIFO per published frame, and their decoder.
//!
//! A message is `seq: u64 LE, slot: u32 LE, flags: u32 LE = 0` (see
//! doc/LAYOUT.md, "Trigger message"). It is only a wake-up: a consumer takes
//! the newest frame from the header, never the one a message names, so
//! nothing read from a pipe decides anything.
//!
//! Everything read from a FIFO is untrusted: on a group bus any member of
//! the group may write into it, in pieces of any size. [`decode`] checks one
//! message; [`Decoder`] cuts a byte stream that arrives in arbitrary chunks
//! into messages with at most 15 bytes of state, counting what is malformed
//! instead of failing.
//!
//! Framing: the producer writes each message with one `write` of 16 bytes
//! (less than `PIPE_BUF`, so atomic): a reader never sees part of one, and
//! the stream is whole messages. A hostile writer can put any bytes between
//! them, which may shift the framing; the decoder then rejects (or
//! misreads, harmlessly) what follows until [`Decoder::finish`], which a
//! reader calls when the pipe is empty, discards the partial message —
//! at that moment no honest message can be half-read, so the framing is
//! back in step.

/// Size of one trigger message.
pub const TRIGGER_LEN: usize = 16;

/// A decoded trigger message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Trigger {
    /// Sequence number of the published frame.
    pub seq: u64,
    /// Slot it was published in.
    pub slot: u32,
}

impl Trigger {
    /// The message's bytes, as the producer writes them.
    pub fn encode(self) -> [u8; TRIGGER_LEN] {
        encode(self.seq, self.slot)
    }
}

/// Why 16 bytes are not a valid trigger message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// The flags word is not 0 (no flag is defined).
    #[error("trigger message has flags {0:#010x}; no flag is defined, so it must be 0")]
    Flags(u32),
    /// The slot is not one of the bus's slots.
    #[error("trigger message names slot {slot}, but the bus has {slot_count} slots")]
    SlotOutOfRange {
        /// The slot the message names.
        slot: u32,
        /// Slots the bus has.
        slot_count: u32,
    },
    /// Fewer than 16 bytes were left when the stream was finished.
    #[error("{0} bytes of a partial trigger message were left over")]
    Partial(u8),
}

/// Builds a trigger message: `seq` u64 LE, `slot` u32 LE, flags u32 = 0.
pub fn encode(seq: u64, slot: u32) -> [u8; TRIGGER_LEN] {
    let mut msg = [0u8; TRIGGER_LEN];
    msg[..8].copy_from_slice(&seq.to_le_bytes());
    msg[8..12].copy_from_slice(&slot.to_le_bytes());
    // msg[12..16]: flags, 0.
    msg
}

fn word(msg: &[u8; TRIGGER_LEN], at: usize) -> u32 {
    u32::from_le_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]])
}

/// Decodes one message; only flags other than 0 are rejected (any `seq`
/// and `slot` are taken as they are).
pub fn decode(msg: &[u8; TRIGGER_LEN]) -> Result<Trigger, TriggerError> {
    let flags = word(msg, 12);
    if flags != 0 {
        return Err(TriggerError::Flags(flags));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&msg[..8]);
    Ok(Trigger {
        seq: u64::from_le_bytes(seq),
        slot: word(msg, 8),
    })
}

/// [`decode`], and the slot must be below `slot_count` (the bus's
/// `slot_count` from its validated layout).
pub fn decode_in(msg: &[u8; TRIGGER_LEN], slot_count: u32) -> Result<Trigger, TriggerError> {
    let t = decode(msg)?;
    if t.slot >= slot_count {
        return Err(TriggerError::SlotOutOfRange {
            slot: t.slot,
            slot_count,
        });
    }
    Ok(t)
}

/// A streaming decoder: takes bytes in chunks of any size, hands out each
/// whole well-formed message, and counts the malformed ones. It holds at
/// most 15 bytes between calls and never panics.
///
/// Counting: a 16-byte message that [`decode`]/[`decode_in`] rejects counts
/// one malformed message; so do the 1 to 15 bytes of a partial message that
/// [`finish`](Self::finish) discards. So `malformed + 16 * well_formed <=
/// bytes fed`.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    partial: [u8; TRIGGER_LEN],
    /// Bytes in `partial` (0..16).
    pending: u8,
    slot_count: Option<u32>,
    well_formed: u64,
    malformed: u64,
    fed: u64,
    first_error: Option<TriggerError>,
}

impl Decoder {
    /// A decoder that checks the flags only.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that also rejects slots at or above `slot_count`.
    pub fn with_slot_count(slot_count: u32) -> Self {
        Self {
            slot_count: Some(slot_count),
            ..Self::default()
        }
    }

    fn take(&mut self, msg: &[u8; TRIGGER_LEN], each: &mut impl FnMut(Trigger)) {
        let decoded = match self.slot_count {
            Some(n) => decode_in(msg, n),
            None => decode(msg),
        };
        match decoded {
            Ok(t) => {
                self.well_formed = self.well_formed.saturating_add(1);
                each(t);
            }
            Err(e) => self.reject(e),
        }
    }

    fn reject(&mut self, e: TriggerError) {
        self.malformed = self.malformed.saturating_add(1);
        self.first_error.get_or_insert(e);
    }

    /// Feeds `bytes` (any length, including 0); calls `each` with every
    /// well-formed message completed by them, in order. A trailing partial
    /// message is kept for the next call.
    pub fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(Trigger)) {
        self.fed = self.fed.saturating_add(bytes.len() as u64);
        if self.pending > 0 {
            let have = usize::from(self.pending);
            let n = (TRIGGER_LEN - have).min(bytes.len());
            self.partial[have..have + n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            // n <= 16 - have, so this stays <= 16.
            self.pending += n as u8;
            if usize::from(self.pending) < TRIGGER_LEN {
                return;
            }
            let msg = self.partial;
            self.pending = 0;
            self.take(&msg, &mut each);
        }
        let mut chunks = bytes.chunks_exact(TRIGGER_LEN);
        for chunk in &mut chunks {
            let mut msg = [0u8; TRIGGER_LEN];
            msg.copy_from_slice(chunk);
            self.take(&msg, &mut each);
        }
        let rest = chunks.remainder();
        // rest.len() < 16 and pending == 0 here.
        self.partial[..rest.len()].copy_from_slice(rest);
        self.pending = rest.len() as u8;
    }

    /// Ends the stream for now (the pipe is empty, or at its end): a partial
    /// message left over is discarded and counted as malformed. Returns
    /// whether there was one. The decoder may be fed again afterwards.
    pub fn finish(&mut self) -> bool {
        if self.pending == 0 {
            return false;
        }
        let n = self.pending;
        self.pending = 0;
        self.reject(TriggerError::Partial(n));
        true
    }

    /// Well-formed messages handed out so far.
    pub fn well_formed(&self) -> u64 {
        self.well_formed
    }

    /// Malformed messages counted so far (rejected ones and discarded
    /// partial ones).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Bytes fed so far.
    pub fn bytes_fed(&self) -> u64 {
        self.fed
    }

    /// Bytes of a partial message waiting for the rest (0..16).
    pub fn pending(&self) -> usize {
        usize::from(self.pending)
    }

    /// Why the first malformed message was rejected, for a log line.
    pub fn first_error(&self) -> Option<TriggerError> {
        self.first_error
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// seq 0x0102030405060708, slot 9: written out byte by byte.
    const KNOWN: [u8; 16] = [
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // seq, LE
        0x09, 0x00, 0x00, 0x00, // slot, LE
        0x00, 0x00, 0x00, 0x00, // flags
    ];

    #[test]
    fn encode_known_answer() {
        assert_eq!(encode(0x0102_0304_0506_0708, 9), KNOWN);
        assert_eq!(encode(0, 0), [0u8; 16]);
        let max = encode(u64::MAX, u32::MAX);
        assert_eq!(&max[..12], &[0xFF; 12]);
        assert_eq!(&max[12..], &[0; 4]);
        assert_eq!(
            encode(1, 0x0A0B_0C0D),
            [1, 0, 0, 0, 0, 0, 0, 0, 0x0D, 0x0C, 0x0B, 0x0A, 0, 0, 0, 0]
        );
    }

    #[test]
    fn decode_known_answer() {
        assert_eq!(
            decode(&KNOWN),
            Ok(Trigger {
                seq: 0x0102_0304_0506_0708,
                slot: 9
            })
        );
        assert_eq!(decode_in(&KNOWN, 10).map(|t| t.slot), Ok(9));
        assert_eq!(
            decode_in(&KNOWN, 9),
            Err(TriggerError::SlotOutOfRange {
                slot: 9,
                slot_count: 9
            })
        );
        let mut flagged = KNOWN;
        flagged[15] = 0x80;
        assert_eq!(decode(&flagged), Err(TriggerError::Flags(0x8000_0000)));
        flagged[15] = 0;
        flagged[12] = 1;
        assert_eq!(decode(&flagged), Err(TriggerError::Flags(1)));
        // Flags are checked before the slot.
        assert_eq!(decode_in(&flagged, 0), Err(TriggerError::Flags(1)));
    }

    #[test]
    fn round_trips() {
        for (seq, slot) in [(0, 0), (1, 1), (u64::MAX, u32::MAX), (1 << 40, 17)] {
            let t = decode(&encode(seq, slot)).unwrap();
            assert_eq!((t.seq, t.slot), (seq, slot));
            assert_eq!(t.encode(), encode(seq, slot));
        }
    }

    fn collect(d: &mut Decoder, chunks: &[&[u8]]) -> Vec<Trigger> {
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, |t| out.push(t));
        }
        out
    }

    #[test]
    fn stream_of_whole_messages_in_odd_chunks() {
        let mut bytes = Vec::new();
        for seq in 1..=5u64 {
            bytes.extend_from_slice(&encode(seq, seq as u32));
        }
        // 80 bytes as 1 + 15 + 17 + 0 + 40 + 7.
        let cuts: [&[u8]; 6] = [
            &bytes[..1],
            &bytes[1..16],
            &bytes[16..33],
            &[],
            &bytes[33..73],
            &bytes[73..],
        ];
        let mut d = Decoder::with_slot_count(8);
        let got = collect(&mut d, &cuts);
        assert_eq!(
            got.iter().map(|t| (t.seq, t.slot)).collect::<Vec<_>>(),
            (1..=5).map(|s| (s, s as u32)).collect::<Vec<_>>()
        );
        assert_eq!((d.well_formed(), d.malformed(), d.pending()), (5, 0, 0));
        assert!(!d.finish());
        assert_eq!(d.bytes_fed(), 80);
    }

    #[test]
    fn malformed_messages_are_counted_and_skipped() {
        let mut bytes = encode(1, 2).to_vec();
        let mut bad = encode(2, 3);
        bad[13] = 1; // flags 0x100
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&encode(3, 99)); // slot out of range
        bytes.extend_from_slice(&encode(4, 0));
        let mut d = Decoder::with_slot_count(10);
        let got = collect(&mut d, &[&bytes]);
        assert_eq!(got.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![1, 4]);
        assert_eq!((d.well_formed(), d.malformed()), (2, 2));
        assert_eq!(d.first_error(), Some(TriggerError::Flags(0x100)));
        // Without a slot count, slot 99 passes.
        let mut d = Decoder::new();
        assert_eq!(collect(&mut d, &[&bytes]).len(), 3);
    }

    #[test]
    fn a_partial_message_is_kept_then_discarded_by_finish() {
        let mut d = Decoder::new();
        let msg = encode(7, 1);
        assert!(collect(&mut d, &[&msg[..5]]).is_empty());
        assert_eq!(d.pending(), 5);
        assert!(d.finish());
        assert_eq!((d.pending(), d.malformed()), (0, 1));
        assert_eq!(d.first_error(), Some(TriggerError::Partial(5)));
        // Back in step: the next whole message decodes.
        assert_eq!(collect(&mut d, &[&msg]), vec![Trigger { seq: 7, slot: 1 }]);
        assert_eq!(d.malformed() + 16 * d.well_formed(), 17);
        assert_eq!(d.bytes_fed(), 21);
    }

    #[test]
    fn a_hostile_prefix_shifts_the_framing_until_finish() {
        // 3 stray bytes, then two honest messages: the framing is off by 3,
        // so what follows is misread or rejected, never trusted, and the
        // 13-byte tail is discarded by finish.
        let mut bytes = vec![0xAA; 3];
        bytes.extend_from_slice(&encode(1, 1));
        bytes.extend_from_slice(&encode(2, 2));
        let mut d = Decoder::with_slot_count(4);
        collect(&mut d, &[&bytes]);
        assert_eq!(d.well_formed() + d.malformed(), 2);
        assert!(d.finish());
        assert_eq!(d.well_formed() + d.malformed(), 3);
        assert!(d.malformed() + 16 * d.well_formed() <= bytes.len() as u64);
    }
}
