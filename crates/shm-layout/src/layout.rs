//! Where every section of a bus lives, computed from a geometry (producer
//! side) or checked from a header (consumer side).

use crate::error::LayoutError;
use crate::format::PixelFormat;
use crate::header::{HeaderFixed, ENTRY_SIZE, HEADER_SIZE, LAYOUT_VERSION, MAGIC, PAGE};
use crate::tables::CONSUMER_ENTRY_SIZE;

/// Largest width or height accepted.
pub const MAX_DIMENSION: u32 = 16_384;
/// Most consumer entries: bits 0..=62 of a pin word (bit 63 is the writer's).
pub const MAX_CONSUMERS: u32 = 63;
/// Most frames one consumer may hold at once.
pub const MAX_PINS_PER_CONSUMER: u32 = 8;
/// Largest bus accepted, in bytes (64 GiB).
pub const MAX_TOTAL_SIZE: u64 = 64 << 30;
/// Row alignment the producer uses for the frame and BGR strides.
pub const ROW_ALIGN: u32 = 64;

/// What a producer asks for when it creates a bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutRequest {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in rows.
    pub height: u32,
    /// Consumer entries (1..=63).
    pub max_consumers: u32,
    /// Frames one consumer may hold at once (1..=8).
    pub pins_per_consumer: u32,
    /// The frame slots' pixel format.
    pub format: PixelFormat,
    /// Significant bits per channel value; 0 = the whole container (8, or
    /// 16 for gray16). See [`PixelFormat::check_significant_bits`].
    pub significant_bits: u8,
}

/// A validated layout: the geometry and every section's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in rows.
    pub height: u32,
    /// The frame slots' pixel format.
    pub format: PixelFormat,
    /// Significant bits per channel value (8, or 1..=16 for gray16).
    pub significant_bits: u8,
    /// Bytes per frame row (>= width * bytes per pixel).
    pub stride: u32,
    /// Bytes per BGR row.
    pub bgr_stride: u32,
    /// Frame slots (= max_consumers * pins_per_consumer + 2).
    pub slot_count: u32,
    /// Consumer entries.
    pub max_consumers: u32,
    /// Frames one consumer may hold at once.
    pub pins_per_consumer: u32,
    /// Offset of the slot table.
    pub slot_table_offset: u64,
    /// Offset of the consumer table.
    pub consumer_table_offset: u64,
    /// Offset of the BGR slot.
    pub bgr_offset: u64,
    /// Offset of frame slot 0.
    pub gray_offset: u64,
    /// Distance between frame slots.
    pub slot_pitch: u64,
    /// Size of the whole object.
    pub total_size: u64,
}

fn check_range(
    field: &'static str,
    v: u32,
    lo: u32,
    hi: u32,
    why: &'static str,
) -> Result<(), LayoutError> {
    if v < lo || v > hi {
        return Err(LayoutError::Field {
            field,
            value: v.into(),
            why,
        });
    }
    Ok(())
}

fn check_geometry(
    width: u32,
    height: u32,
    max_consumers: u32,
    pins: u32,
) -> Result<(), LayoutError> {
    check_range(
        "width",
        width,
        1,
        MAX_DIMENSION,
        "must be 1 to 16384 pixels",
    )?;
    check_range(
        "height",
        height,
        1,
        MAX_DIMENSION,
        "must be 1 to 16384 rows",
    )?;
    check_range(
        "max_consumers",
        max_consumers,
        1,
        MAX_CONSUMERS,
        "must be 1 to 63",
    )?;
    check_range(
        "pins_per_consumer",
        pins,
        1,
        MAX_PINS_PER_CONSUMER,
        "must be 1 to 8",
    )
}

/// `max_consumers * pins_per_consumer + 2`: with every consumer holding its
/// whole budget, one slot is the newest frame and one is free to write.
pub fn slot_count_for(max_consumers: u32, pins_per_consumer: u32) -> u32 {
    max_consumers * pins_per_consumer + 2
}

impl Layout {
    /// The canonical layout for a request: header page, slot table, consumer
    /// table, BGR slot, frame slots, each section starting on a page. Rows
    /// are `width * bytes_per_pixel` bytes rounded up to [`ROW_ALIGN`].
    pub fn compute(req: LayoutRequest) -> Result<Self, LayoutError> {
        check_geometry(
            req.width,
            req.height,
            req.max_consumers,
            req.pins_per_consumer,
        )?;
        let too_big = |total: u64| LayoutError::Field {
            field: "total_size",
            value: total,
            why: "the bus would exceed 64 GiB: use a smaller size or fewer consumers",
        };
        let significant_bits = req.format.check_significant_bits(req.significant_bits)?;
        let stride = (req.width * req.format.bytes_per_pixel()).next_multiple_of(ROW_ALIGN);
        let bgr_stride = (req.width * 3).next_multiple_of(ROW_ALIGN);
        let slot_count = slot_count_for(req.max_consumers, req.pins_per_consumer);
        let h = u64::from(req.height);
        let slot_table_offset = PAGE;
        let consumer_table_offset =
            slot_table_offset + (u64::from(slot_count) * ENTRY_SIZE).next_multiple_of(PAGE);
        let bgr_offset = consumer_table_offset
            + (u64::from(req.max_consumers) * CONSUMER_ENTRY_SIZE).next_multiple_of(PAGE);
        let gray_offset = bgr_offset + (u64::from(bgr_stride) * h).next_multiple_of(PAGE);
        let slot_pitch = (u64::from(stride) * h).next_multiple_of(PAGE);
        let total_size = gray_offset + u64::from(slot_count) * slot_pitch;
        if total_size > MAX_TOTAL_SIZE {
            return Err(too_big(total_size));
        }
        Ok(Self {
            width: req.width,
            height: req.height,
            format: req.format,
            significant_bits,
            stride,
            bgr_stride,
            slot_count,
            max_consumers: req.max_consumers,
            pins_per_consumer: req.pins_per_consumer,
            slot_table_offset,
            consumer_table_offset,
            bgr_offset,
            gray_offset,
            slot_pitch,
            total_size,
        })
    }

    /// Checks a header copy against the real size of the object it came from.
    /// Every field is range-checked and every section must lie page-aligned,
    /// in order, without overlap, inside `object_size`; only then is a
    /// `Layout` returned. Arithmetic is checked, so no input can overflow.
    pub fn validate(h: &HeaderFixed, object_size: u64) -> Result<Self, LayoutError> {
        if h.magic == 0 {
            return Err(LayoutError::NotReady);
        }
        if h.magic != MAGIC {
            return Err(LayoutError::BadMagic {
                found: h.magic,
                expected: MAGIC,
            });
        }
        if h.version != LAYOUT_VERSION {
            return Err(LayoutError::Version {
                found: h.version,
                expected: LAYOUT_VERSION,
            });
        }
        let field = |field, value: u64, why| LayoutError::Field { field, value, why };
        if h.header_size != HEADER_SIZE {
            return Err(field("header_size", h.header_size.into(), "must be 256"));
        }
        let format = PixelFormat::from_code(h.pixel_format).ok_or(field(
            "pixel_format",
            h.pixel_format.into(),
            "must be 1 (gray8), 2 (gray16), 3 (bgr8) or 4 (rgb8)",
        ))?;
        for (name, found, expected) in [
            ("channels", h.channels, format.channels()),
            (
                "bytes_per_pixel",
                h.bytes_per_pixel,
                format.bytes_per_pixel(),
            ),
        ] {
            if u32::from(found) != expected {
                return Err(LayoutError::Mismatch {
                    field: name,
                    found: found.into(),
                    expected: expected.into(),
                });
            }
        }
        if h.significant_bits == 0 {
            return Err(field("significant_bits", 0, "must be at least 1"));
        }
        let significant_bits = format.check_significant_bits(h.significant_bits)?;
        check_geometry(h.width, h.height, h.max_consumers, h.pins_per_consumer)?;
        let expected_slots = slot_count_for(h.max_consumers, h.pins_per_consumer);
        if h.slot_count != expected_slots {
            return Err(LayoutError::Mismatch {
                field: "slot_count",
                found: h.slot_count.into(),
                expected: expected_slots.into(),
            });
        }
        if u64::from(h.stride) < u64::from(h.width) * u64::from(format.bytes_per_pixel()) {
            return Err(field(
                "stride",
                h.stride.into(),
                "must be at least width * bytes_per_pixel",
            ));
        }
        if h.stride % format.bytes_per_channel() != 0 {
            return Err(field(
                "stride",
                h.stride.into(),
                "must be even for gray16, so every row of u16 values is aligned",
            ));
        }
        if u64::from(h.bgr_stride) < 3 * u64::from(h.width) {
            return Err(field(
                "bgr_stride",
                h.bgr_stride.into(),
                "must be at least 3 * width",
            ));
        }
        if h.total_size > MAX_TOTAL_SIZE {
            return Err(field("total_size", h.total_size, "must be at most 64 GiB"));
        }
        let height = u64::from(h.height);
        let overflow = |f| field(f, u64::MAX, "section size overflows");
        // Each section: page-aligned start, at or after the previous end.
        let sections: [(&'static str, u64, u64); 4] = [
            (
                "slot_table_offset",
                h.slot_table_offset,
                u64::from(h.slot_count) * ENTRY_SIZE,
            ),
            (
                "consumer_table_offset",
                h.consumer_table_offset,
                u64::from(h.max_consumers) * CONSUMER_ENTRY_SIZE,
            ),
            (
                "bgr_offset",
                h.bgr_offset,
                u64::from(h.bgr_stride)
                    .checked_mul(height)
                    .ok_or(overflow("bgr_offset"))?,
            ),
            (
                "gray_offset",
                h.gray_offset,
                h.slot_pitch
                    .checked_mul(h.slot_count.into())
                    .ok_or(overflow("gray_offset"))?,
            ),
        ];
        let mut end = PAGE; // the header section
        for (name, offset, len) in sections {
            if offset % PAGE != 0 {
                return Err(field(name, offset, "must be a multiple of 4096"));
            }
            if offset < end {
                return Err(field(name, offset, "overlaps the section before it"));
            }
            end = offset.checked_add(len).ok_or(overflow(name))?;
        }
        let frame_bytes = u64::from(h.stride) * height;
        if h.slot_pitch < frame_bytes || h.slot_pitch % PAGE != 0 {
            return Err(field(
                "slot_pitch",
                h.slot_pitch,
                "must be a multiple of 4096 and at least stride * height",
            ));
        }
        if end > h.total_size {
            return Err(LayoutError::Mismatch {
                field: "total_size",
                found: h.total_size,
                expected: end,
            });
        }
        if h.total_size > object_size {
            return Err(LayoutError::Truncated {
                expected: h.total_size,
                actual: object_size,
            });
        }
        Ok(Self {
            width: h.width,
            height: h.height,
            format,
            significant_bits,
            stride: h.stride,
            bgr_stride: h.bgr_stride,
            slot_count: h.slot_count,
            max_consumers: h.max_consumers,
            pins_per_consumer: h.pins_per_consumer,
            slot_table_offset: h.slot_table_offset,
            consumer_table_offset: h.consumer_table_offset,
            bgr_offset: h.bgr_offset,
            gray_offset: h.gray_offset,
            slot_pitch: h.slot_pitch,
            total_size: h.total_size,
        })
    }

    /// Bytes of one frame including row padding (`stride * height`).
    pub fn frame_len(&self) -> usize {
        self.stride as usize * self.height as usize
    }

    /// Bytes of the BGR frame including row padding.
    pub fn bgr_len(&self) -> usize {
        self.bgr_stride as usize * self.height as usize
    }

    /// Offset of frame slot `slot` (callers pass `slot < slot_count`).
    pub fn gray_slot_offset(&self, slot: u32) -> u64 {
        debug_assert!(slot < self.slot_count);
        self.gray_offset + u64::from(slot) * self.slot_pitch
    }

    /// Length of the control part (header, slot and consumer tables) that a
    /// consumer maps read-write; pixels start at [`Layout::bgr_offset`].
    pub fn control_len(&self) -> u64 {
        self.bgr_offset
    }

    /// A header for this layout, magic still zero (the producer publishes it
    /// last).
    pub fn header(
        &self,
        instance_id: u64,
        producer_pid: u32,
        fps_milli: u32,
        flags: u32,
        created_unix_ns: u64,
    ) -> HeaderFixed {
        HeaderFixed {
            magic: 0,
            version: LAYOUT_VERSION,
            header_size: HEADER_SIZE,
            total_size: self.total_size,
            instance_id,
            producer_pid,
            pixel_format: self.format.code(),
            width: self.width,
            height: self.height,
            stride: self.stride,
            slot_count: self.slot_count,
            max_consumers: self.max_consumers,
            pins_per_consumer: self.pins_per_consumer,
            fps_milli,
            bgr_stride: self.bgr_stride,
            flags,
            channels: self.format.channels() as u8,
            bytes_per_pixel: self.format.bytes_per_pixel() as u8,
            significant_bits: self.significant_bits,
            _reserved: 0,
            slot_table_offset: self.slot_table_offset,
            consumer_table_offset: self.consumer_table_offset,
            bgr_offset: self.bgr_offset,
            gray_offset: self.gray_offset,
            slot_pitch: self.slot_pitch,
            created_unix_ns,
        }
    }
}

#[cfg(test)]
mod tests;
