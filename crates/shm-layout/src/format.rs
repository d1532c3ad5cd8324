//! Pixel formats: what one pixel of a frame slot is, as the header records
//! it (`pixel_format`, `channels`, `bytes_per_pixel`, `significant_bits`,
//! see `doc/LAYOUT.md` §5.1).

use std::fmt;
use std::str::FromStr;

/// The pixel format of a bus's frame slots. The discriminant is the code
/// stored in the header's `pixel_format` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum PixelFormat {
    /// 8-bit grayscale, one byte per pixel (code 1, the default).
    #[default]
    Gray8 = 1,
    /// 16-bit grayscale, one little-endian `u16` per pixel (code 2). Mono10,
    /// mono12 and mono14 cameras store their values in it unshifted (0 to
    /// 2^bits - 1); the header records the significant bit count.
    Gray16 = 2,
    /// 8-bit colour, bytes B, G, R per pixel (code 3, OpenCV's order).
    Bgr8 = 3,
    /// 8-bit colour, bytes R, G, B per pixel (code 4).
    Rgb8 = 4,
}

/// Every format, in code order.
pub const ALL_FORMATS: [PixelFormat; 4] = [
    PixelFormat::Gray8,
    PixelFormat::Gray16,
    PixelFormat::Bgr8,
    PixelFormat::Rgb8,
];

/// A format name that is not one of `gray8`, `gray16`, `bgr8`, `rgb8`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown pixel format {0:?}: use gray8, gray16, bgr8 or rgb8")]
pub struct UnknownPixelFormat(pub String);

impl PixelFormat {
    /// The format with header code `code`, `None` for an unknown code.
    pub fn from_code(code: u32) -> Option<Self> {
        ALL_FORMATS.into_iter().find(|f| f.code() == code)
    }

    /// The header code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Channels per pixel: 1 for gray, 3 for colour.
    pub fn channels(self) -> u32 {
        match self {
            Self::Gray8 | Self::Gray16 => 1,
            Self::Bgr8 | Self::Rgb8 => 3,
        }
    }

    /// Bytes of one channel value: 2 for gray16, 1 otherwise.
    pub fn bytes_per_channel(self) -> u32 {
        match self {
            Self::Gray16 => 2,
            _ => 1,
        }
    }

    /// Bytes per pixel (`channels * bytes_per_channel`).
    pub fn bytes_per_pixel(self) -> u32 {
        self.channels() * self.bytes_per_channel()
    }

    /// Bits of one channel's container: 16 for gray16, 8 otherwise. The
    /// largest significant bit count the format can record.
    pub fn container_bits(self) -> u8 {
        (self.bytes_per_channel() * 8) as u8
    }

    /// The lower-case name (`gray8`, `gray16`, `bgr8`, `rgb8`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Gray8 => "gray8",
            Self::Gray16 => "gray16",
            Self::Bgr8 => "bgr8",
            Self::Rgb8 => "rgb8",
        }
    }

    /// The significant bit count to record for a request of `bits`: 0 means
    /// the whole container. 8-bit formats accept only 8 (or 0); gray16
    /// accepts 1 to 16 (10 for mono10, 12 for mono12...).
    pub fn check_significant_bits(self, bits: u8) -> Result<u8, crate::LayoutError> {
        let max = self.container_bits();
        match bits {
            0 => Ok(max),
            b if b == max || (self == Self::Gray16 && b <= max) => Ok(b),
            b => Err(crate::LayoutError::Field {
                field: "significant_bits",
                value: b.into(),
                why: if self == Self::Gray16 {
                    "must be 1 to 16 for gray16"
                } else {
                    "must be 8 for an 8-bit format"
                },
            }),
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PixelFormat {
    type Err = UnknownPixelFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_FORMATS
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownPixelFormat(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_names_and_sizes() {
        let table: Vec<_> = ALL_FORMATS
            .iter()
            .map(|f| {
                (
                    f.code(),
                    f.name(),
                    f.channels(),
                    f.bytes_per_pixel(),
                    f.container_bits(),
                )
            })
            .collect();
        assert_eq!(
            table,
            [
                (1, "gray8", 1, 1, 8),
                (2, "gray16", 1, 2, 16),
                (3, "bgr8", 3, 3, 8),
                (4, "rgb8", 3, 3, 8),
            ]
        );
        for f in ALL_FORMATS {
            assert_eq!(PixelFormat::from_code(f.code()), Some(f));
            assert_eq!(f.name().parse::<PixelFormat>(), Ok(f));
        }
        assert_eq!(PixelFormat::from_code(0), None);
        assert_eq!(PixelFormat::from_code(5), None);
        let e = "GRAY8".parse::<PixelFormat>().unwrap_err().to_string();
        assert!(e.contains("gray8, gray16, bgr8 or rgb8"), "{e}");
        assert_eq!(PixelFormat::default(), PixelFormat::Gray8);
    }

    #[test]
    fn significant_bits_rules() {
        use PixelFormat::*;
        assert_eq!(Gray8.check_significant_bits(0), Ok(8));
        assert_eq!(Gray8.check_significant_bits(8), Ok(8));
        assert!(Gray8.check_significant_bits(7).is_err());
        assert!(Bgr8.check_significant_bits(16).is_err());
        assert_eq!(Gray16.check_significant_bits(0), Ok(16));
        assert_eq!(Gray16.check_significant_bits(12), Ok(12));
        assert_eq!(Gray16.check_significant_bits(1), Ok(1));
        assert!(Gray16.check_significant_bits(17).is_err());
    }

    /// Every bit count of every format: the answer, and for a refusal the
    /// whole error (its field, value and the rule of that format).
    #[test]
    fn significant_bits_errors_name_the_rule_of_the_format() {
        let refused = |bits: u8, why| {
            Err(crate::LayoutError::Field {
                field: "significant_bits",
                value: bits.into(),
                why,
            })
        };
        for f in ALL_FORMATS {
            for bits in 0..=255u8 {
                let want = match (f, bits) {
                    (PixelFormat::Gray16, 0) => Ok(16),
                    (PixelFormat::Gray16, 1..=16) => Ok(bits),
                    (PixelFormat::Gray16, _) => refused(bits, "must be 1 to 16 for gray16"),
                    (_, 0 | 8) => Ok(8),
                    _ => refused(bits, "must be 8 for an 8-bit format"),
                };
                assert_eq!(f.check_significant_bits(bits), want, "{f} {bits}");
            }
        }
        let e = PixelFormat::Gray16.check_significant_bits(17).unwrap_err();
        assert_eq!(
            e.to_string(),
            "header field `significant_bits` is 17, which is invalid: must be 1 to 16 for gray16"
        );
    }

    /// `Display` writes the name that `FromStr` reads back.
    #[test]
    fn display_is_the_name() {
        let shown: Vec<String> = ALL_FORMATS.iter().map(|f| f.to_string()).collect();
        assert_eq!(shown, ["gray8", "gray16", "bgr8", "rgb8"]);
        for f in ALL_FORMATS {
            assert_eq!(f.to_string().parse::<PixelFormat>(), Ok(f));
        }
    }
}
