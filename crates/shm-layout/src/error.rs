//! Typed errors for everything that can be wrong with a bus's memory or its
//! description.

/// Why a shared memory object is not a usable framebus bus, or why a
/// requested geometry cannot be laid out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The object is smaller than a header.
    #[error("the shared memory object is {size} bytes, smaller than a framebus header ({min} bytes): it is truncated or not a framebus bus")]
    TooSmall {
        /// Bytes in the mapping.
        size: u64,
        /// Bytes a header needs.
        min: u64,
    },
    /// The magic number is zero: a producer is still initialising the bus.
    #[error(
        "the bus is still being initialised by its producer (magic is zero); retry in a moment"
    )]
    NotReady,
    /// The magic number is something else: this is not a framebus object.
    #[error("the shared memory object is not a framebus bus (magic {found:#018x}, expected {expected:#018x})")]
    BadMagic {
        /// What the object holds.
        found: u64,
        /// What framebus writes.
        expected: u64,
    },
    /// Another layout version wrote this bus.
    #[error("the bus uses layout version {found}, this build understands version {expected}: run a producer and consumers from the same framebus release")]
    Version {
        /// The header's version.
        found: u32,
        /// This build's version.
        expected: u32,
    },
    /// A header field is out of its allowed range.
    #[error("header field `{field}` is {value}, which is invalid: {why}")]
    Field {
        /// The field's name as in doc/LAYOUT.md.
        field: &'static str,
        /// The value found.
        value: u64,
        /// What the field must satisfy.
        why: &'static str,
    },
    /// A header field disagrees with the value derived from the geometry.
    #[error("header field `{field}` is {found}, but the geometry implies {expected}: the header is corrupt")]
    Mismatch {
        /// The field's name as in doc/LAYOUT.md.
        field: &'static str,
        /// The value found.
        found: u64,
        /// The value the layout rules give.
        expected: u64,
    },
    /// The trigger directory recorded in the header page is unusable.
    #[error("the bus's trigger directory path (header offset 256) is invalid: {why}")]
    TriggerDir {
        /// What is wrong with it.
        why: &'static str,
    },
    /// The mapping is smaller than the header says the bus is.
    #[error("the header describes a bus of {expected} bytes but the shared memory object has only {actual}: it is truncated")]
    Truncated {
        /// Bytes the header asks for.
        expected: u64,
        /// Bytes that exist.
        actual: u64,
    },
}
