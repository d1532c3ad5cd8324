//! Which liveness token: the producer's or a consumer entry's (the same
//! names on every OS; each OS module says what holds one).

/// Whose token: the producer's, or consumer entry `i`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenId {
    /// The producer of this bus instance.
    Producer,
    /// Consumer entry `i` (0..63).
    Consumer(u32),
}

impl TokenId {
    /// The byte of the bus object this token locks.
    pub fn offset(self) -> i64 {
        match self {
            Self::Producer => 0,
            Self::Consumer(i) => 1 + i64::from(i),
        }
    }
}
