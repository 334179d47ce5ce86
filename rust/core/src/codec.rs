//! Frame primitives shared by every protocol's wire format.
//!
//! A frame is one message between peers. Its layout, specified normatively in
//! `docs/wire-format.md`, is:
//!
//! ```text
//! offset  size  field
//! 0       4     frame length, u32 little-endian: every byte of the frame, this field and the CRC included
//! 4       1     wire version (WIRE_VERSION = 1)
//! 5       1     protocol id (PROTOCOL_RAFT = 1, PROTOCOL_PAXOS = 2, PROTOCOL_ZAB = 3)
//! 6       1     message type (meaning defined by the protocol)
//! 7       n     payload (layout defined by the protocol and the message type)
//! 7 + n   4     CRC32C (Castagnoli), u32 little-endian, over bytes [0, 7 + n)
//! ```
//!
//! Every integer is fixed-width little-endian. [`FrameWriter`] builds a frame into one pre-sized
//! buffer; [`FrameReader`] verifies the envelope and then reads the payload field by field. Reading
//! is total: every malformed input ends in a [`DecodeError`], every length is checked against the
//! bytes that remain before anything is sliced or allocated, and byte strings come out as
//! zero-copy [`Bytes`] slices of the input frame.
//!
//! The same reader and writer also serve *records*: small self-describing encodings (a Raft conf
//! change inside an entry, a hard state inside a storage record) that travel inside something that
//! is already checksummed, so they carry no length header and no CRC
//! ([`FrameWriter::unframed`], [`FrameReader::unframed`]).

use bytes::Bytes;

use crate::error::DecodeError;
use crate::protocol_id::ProtocolId;

/// The wire format version this build writes and the only one it reads.
pub const WIRE_VERSION: u8 = 1;

/// Protocol ids carried in byte 5 of every frame ([`ProtocolId::frame_byte`]). A frame of one
/// protocol is never decoded by another.
pub const PROTOCOL_RAFT: u8 = ProtocolId::Raft.frame_byte();
pub const PROTOCOL_PAXOS: u8 = ProtocolId::Paxos.frame_byte();
/// Reserved for Zab, which has no [`ProtocolId`] variant yet.
pub const PROTOCOL_ZAB: u8 = 3;

/// Bytes before the payload: length (4), version (1), protocol (1), message type (1).
pub const HEADER_BYTES: usize = 7;
/// Bytes after the payload: the CRC32C.
pub const TRAILER_BYTES: usize = 4;
/// The smallest well-formed frame: a header and a trailer around an empty payload.
pub const MIN_FRAME_BYTES: usize = HEADER_BYTES + TRAILER_BYTES;
/// The default cap on a whole frame (64 MiB). A receiver rejects larger frames before buffering
/// them; a sender must split its output so no frame exceeds it.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Declares a one-byte enum of the wire format (message types, entry and value kinds): the enum
/// with its numbers, `ALL` (every value, in the order declared) and `from_u8` (`None` for a byte
/// no value has). The numbers are part of the wire format and never change.
#[macro_export]
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $value:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant = $value, )*
        }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: [$name; [$($value),*].len()] = [$($name::$variant),*];

            /// The value whose byte is `value`, if any.
            pub fn from_u8(value: u8) -> Option<$name> {
                match value {
                    $( $value => Some($name::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

/// The wire API every protocol's `wire.rs` offers around its own `encode`, `encoded_len` and
/// `decode_with_limit`: a `decode` at the default frame limit, and the three as methods of its
/// `Message`. Invoked once in each `wire.rs`, so every protocol's messages are used alike.
#[macro_export]
macro_rules! message_wire_api {
    ($message:ty) => {
        /// Decodes one frame with the default frame limit ([`MAX_FRAME_BYTES`](crate::codec::MAX_FRAME_BYTES)).
        /// Byte strings in the result are zero-copy slices of `frame`.
        pub fn decode(frame: &::bytes::Bytes) -> Result<$message, $crate::DecodeError> {
            decode_with_limit(frame, $crate::codec::MAX_FRAME_BYTES)
        }

        impl $message {
            /// This message as one wire frame; see [`encode`].
            pub fn encode(&self) -> ::bytes::Bytes {
                encode(self)
            }

            /// The exact size of [`Self::encode`]'s output.
            pub fn encoded_len(&self) -> usize {
                encoded_len(self)
            }

            /// Decodes one wire frame; see [`decode`].
            pub fn decode(frame: &::bytes::Bytes) -> Result<$message, $crate::DecodeError> {
                decode(frame)
            }
        }
    };
}

/// Size on the wire of a length-prefixed byte string (`put_bytes`) of `len` bytes.
#[inline]
pub const fn bytes_field_len(len: usize) -> usize {
    4 + len
}

/// The fixed part of a frame as read by [`peek_header`], before any check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The declared length of the whole frame, header and CRC included.
    pub frame_len: u32,
    pub version: u8,
    pub protocol: u8,
    pub msg_type: u8,
}

/// Reads the header of a frame without checking anything else (not the version, not the length,
/// not the CRC). A transport uses it to learn how many bytes to buffer for the next frame and where
/// to route it; it must still compare `frame_len` with its own limit before buffering.
pub fn peek_header(frame: &[u8]) -> Result<FrameHeader, DecodeError> {
    match frame.get(..HEADER_BYTES) {
        Some(&[l0, l1, l2, l3, version, protocol, msg_type]) => {
            Ok(FrameHeader { frame_len: u32::from_le_bytes([l0, l1, l2, l3]), version, protocol, msg_type })
        }
        _ => Err(DecodeError::Truncated { offset: frame.len(), needed: HEADER_BYTES - frame.len() }),
    }
}

/// Rewrites the length field and the CRC of `frame` so that its envelope is valid again after
/// bytes inside it were changed. Used by the fuzz target and the fuzz-style tests to reach the
/// payload parser with mutated frames; never needed by protocol code. Frames shorter than
/// [`MIN_FRAME_BYTES`] are left alone.
#[doc(hidden)]
pub fn reseal_frame(frame: &mut [u8]) {
    let len = frame.len();
    if len < MIN_FRAME_BYTES || len > u32::MAX as usize {
        return;
    }
    frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
    let crc = crc32c::crc32c(&frame[..len - TRAILER_BYTES]);
    frame[len - TRAILER_BYTES..].copy_from_slice(&crc.to_le_bytes());
}

/// Builds one frame (or one unframed record) into a single buffer.
///
/// Callers compute the exact payload size first and pass it to [`FrameWriter::new`], so encoding
/// does one allocation and `finish` hands the buffer over without copying.
#[derive(Debug)]
pub struct FrameWriter {
    buf: Vec<u8>,
    /// Whether `finish` completes a frame (length field and CRC) or returns a bare record.
    framed: bool,
    /// The length header and payload must reach by `finish`, when the caller said
    /// ([`FrameWriter::message`]): a size computed apart from the encoder is checked against it.
    expected_len: Option<usize>,
}

impl FrameWriter {
    /// Starts a frame of `protocol` and `msg_type`. `payload_len_hint` should be the exact payload
    /// size: the buffer is allocated once for header + payload + CRC.
    pub fn new(protocol: u8, msg_type: u8, payload_len_hint: usize) -> FrameWriter {
        let mut buf = Vec::with_capacity(MIN_FRAME_BYTES + payload_len_hint);
        // The length is not known until `finish`; reserve its four bytes.
        buf.extend_from_slice(&[0, 0, 0, 0, WIRE_VERSION, protocol, msg_type]);
        FrameWriter { buf, framed: true, expected_len: None }
    }

    /// Starts the frame of a peer message: the header, then the sender and the receiver, the
    /// first two payload fields of every protocol's messages. `payload_len` is the exact payload
    /// size, these two fields included; `finish` checks it in debug builds.
    pub fn message(protocol: u8, msg_type: u8, from: u64, to: u64, payload_len: usize) -> FrameWriter {
        let mut w = FrameWriter::new(protocol, msg_type, payload_len);
        w.expected_len = Some(HEADER_BYTES + payload_len);
        w.put_u64(from);
        w.put_u64(to);
        w
    }

    /// Starts a bare record: no header, no CRC, just the fields that are put.
    pub fn unframed(len_hint: usize) -> FrameWriter {
        FrameWriter { buf: Vec::with_capacity(len_hint), framed: false, expected_len: None }
    }

    #[inline]
    pub fn put_u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    #[inline]
    pub fn put_bool(&mut self, value: bool) {
        self.buf.push(u8::from(value));
    }

    #[inline]
    pub fn put_u32(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    #[inline]
    pub fn put_u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// Writes a count (of list items) as a u32. Panics if it does not fit: the encoder's caller
    /// broke the invariant that what it sends respects the wire limits.
    #[inline]
    pub fn put_count(&mut self, count: usize) {
        let count = u32::try_from(count).expect("count exceeds the u32 range of the wire format");
        self.put_u32(count);
    }

    /// Writes a length-prefixed byte string: u32 length, then the bytes.
    #[inline]
    pub fn put_bytes(&mut self, value: &[u8]) {
        self.put_count(value.len());
        self.buf.extend_from_slice(value);
    }

    /// Writes bytes with no length prefix (the reader must know how many to expect).
    #[inline]
    pub fn put_raw(&mut self, value: &[u8]) {
        self.buf.extend_from_slice(value);
    }

    /// A counted list: the count (u32), then each item as `put_item` writes it.
    #[inline]
    pub fn put_list<T>(&mut self, items: &[T], mut put_item: impl FnMut(&mut FrameWriter, &T)) {
        self.put_count(items.len());
        for item in items {
            put_item(self, item);
        }
    }

    /// An optional field: a presence byte (0 or 1), then the value as `put_value` writes it.
    #[inline]
    pub fn put_option<T>(&mut self, value: Option<&T>, put_value: impl FnOnce(&mut FrameWriter, &T)) {
        match value {
            None => self.put_u8(0),
            Some(value) => {
                self.put_u8(1);
                put_value(self, value);
            }
        }
    }

    /// Bytes written so far, header included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Completes the frame: fills in the length field and appends the CRC32C of everything before
    /// it. An unframed record is returned as written.
    ///
    /// Panics if the frame exceeds 4 GiB, which no sender respecting [`MAX_FRAME_BYTES`] produces.
    pub fn finish(mut self) -> Bytes {
        if let Some(expected) = self.expected_len {
            debug_assert_eq!(self.buf.len(), expected, "the computed payload length disagrees with the encoder");
        }
        if self.framed {
            let frame_len = self.buf.len() + TRAILER_BYTES;
            let frame_len = u32::try_from(frame_len).expect("frame exceeds the u32 length field");
            self.buf[..4].copy_from_slice(&frame_len.to_le_bytes());
            let crc = crc32c::crc32c(&self.buf);
            self.buf.extend_from_slice(&crc.to_le_bytes());
        }
        Bytes::from(self.buf)
    }
}

/// Reads the payload of one verified frame (or one unframed record), field by field.
///
/// Invariant: `pos <= end <= buf.len()`. Every getter checks the bytes it needs against
/// `end - pos` before touching them, so no input can make it panic or over-allocate.
#[derive(Debug, Clone)]
pub struct FrameReader {
    buf: Bytes,
    pos: usize,
    end: usize,
}

impl FrameReader {
    /// Verifies the envelope of `frame` and returns its message type and a reader positioned at
    /// the start of the payload.
    ///
    /// Checks, in this order: at least [`MIN_FRAME_BYTES`]; declared length within
    /// `max_frame_bytes`; declared length equal to the bytes given; wire version; protocol id;
    /// CRC32C. The version is checked before the CRC because the version defines the layout of
    /// everything after it, the checksum included. The message type is the protocol's to check.
    pub fn open(frame: &Bytes, protocol: u8, max_frame_bytes: usize) -> Result<(u8, FrameReader), DecodeError> {
        let header = peek_header(frame)?;
        let declared = header.frame_len as usize;
        if declared > max_frame_bytes {
            return Err(DecodeError::TooLarge { size: declared, limit: max_frame_bytes });
        }
        if frame.len() > max_frame_bytes {
            return Err(DecodeError::TooLarge { size: frame.len(), limit: max_frame_bytes });
        }
        if declared != frame.len() {
            return Err(DecodeError::LengthMismatch { declared, actual: frame.len() });
        }
        if frame.len() < MIN_FRAME_BYTES {
            return Err(DecodeError::Truncated { offset: frame.len(), needed: MIN_FRAME_BYTES - frame.len() });
        }
        if header.version != WIRE_VERSION {
            return Err(DecodeError::Version(header.version));
        }
        if header.protocol != protocol {
            return Err(DecodeError::WrongProtocol { expected: protocol, found: header.protocol });
        }
        let end = frame.len() - TRAILER_BYTES;
        let (covered, trailer) = frame.split_at(end);
        let expected = match trailer {
            &[c0, c1, c2, c3] => u32::from_le_bytes([c0, c1, c2, c3]),
            _ => return Err(DecodeError::Truncated { offset: end, needed: TRAILER_BYTES }),
        };
        let computed = crc32c::crc32c(covered);
        if expected != computed {
            return Err(DecodeError::Checksum { expected, computed });
        }
        Ok((header.msg_type, FrameReader { buf: frame.clone(), pos: HEADER_BYTES, end }))
    }

    /// Opens the frame of a peer message ([`FrameWriter::message`]): checks the envelope as
    /// [`FrameReader::open`] does, names the message type with `parse_type` (`None`: unknown to the
    /// protocol) and reads the sender and the receiver. Returns them with a reader at the rest.
    pub fn open_message<T>(
        frame: &Bytes,
        protocol: u8,
        max_frame_bytes: usize,
        parse_type: impl FnOnce(u8) -> Option<T>,
    ) -> Result<(T, u64, u64, FrameReader), DecodeError> {
        let (type_byte, mut r) = FrameReader::open(frame, protocol, max_frame_bytes)?;
        let msg_type = parse_type(type_byte).ok_or(DecodeError::UnknownMessageType(type_byte))?;
        let from = r.get_u64()?;
        let to = r.get_u64()?;
        Ok((msg_type, from, to, r))
    }

    /// A reader over a bare record (no header, no CRC): the whole of `record` is payload.
    pub fn unframed(record: &Bytes) -> FrameReader {
        FrameReader { buf: record.clone(), pos: 0, end: record.len() }
    }

    /// Payload bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Offset of the next byte to read, from the start of the frame (or record).
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails with `Truncated` unless at least `len` payload bytes remain.
    #[inline]
    pub fn ensure(&self, len: usize) -> Result<(), DecodeError> {
        let remaining = self.remaining();
        if len > remaining {
            return Err(DecodeError::Truncated { offset: self.pos, needed: len - remaining });
        }
        Ok(())
    }

    #[inline]
    fn take(&mut self, len: usize) -> Result<&[u8], DecodeError> {
        self.ensure(len)?;
        let start = self.pos;
        self.pos += len;
        self.buf.get(start..start + len).ok_or(DecodeError::Truncated { offset: start, needed: len })
    }

    #[inline]
    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let offset = self.pos;
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated { offset, needed: N })
    }

    #[inline]
    pub fn get_u8(&mut self) -> Result<u8, DecodeError> {
        let [value] = self.take_array::<1>()?;
        Ok(value)
    }

    /// A boolean is one byte, 0 or 1; anything else is `InvalidField { field, .. }`.
    #[inline]
    pub fn get_bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.get_u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::InvalidField { field, value: u64::from(other) }),
        }
    }

    #[inline]
    pub fn get_u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    #[inline]
    pub fn get_u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    /// Reads what [`FrameWriter::put_list`] wrote: the count, checked as [`FrameReader::get_count`]
    /// checks it, then each item by `get_item`.
    #[inline]
    pub fn get_list<T>(
        &mut self,
        field: &'static str,
        max_count: usize,
        min_item_bytes: usize,
        mut get_item: impl FnMut(&mut FrameReader) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.get_count(field, max_count, min_item_bytes)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(get_item(self)?);
        }
        Ok(items)
    }

    /// Reads what [`FrameWriter::put_option`] wrote; a presence byte other than 0 or 1 is
    /// `InvalidField { field, .. }`.
    #[inline]
    pub fn get_option<T>(
        &mut self,
        field: &'static str,
        get_value: impl FnOnce(&mut FrameReader) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.get_u8()? {
            0 => Ok(None),
            1 => get_value(self).map(Some),
            other => Err(DecodeError::InvalidField { field, value: u64::from(other) }),
        }
    }

    /// Reads a u32 list count and checks it before the caller allocates: it must not exceed
    /// `max_count` (`InvalidField { field, .. }`), and `count * min_item_bytes` must fit in the
    /// payload that remains (`Truncated`), so a forged count can never reserve more memory than
    /// the input could fill.
    pub fn get_count(
        &mut self,
        field: &'static str,
        max_count: usize,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.get_u32()?;
        let count_usize = count as usize;
        if count_usize > max_count {
            return Err(DecodeError::InvalidField { field, value: u64::from(count) });
        }
        self.ensure(count_usize.saturating_mul(min_item_bytes))?;
        Ok(count_usize)
    }

    /// Reads a length-prefixed byte string as a zero-copy slice of the frame. A length above
    /// `max_len` is `TooLarge`; one beyond the remaining payload is `Truncated`.
    pub fn get_bytes(&mut self, max_len: usize) -> Result<Bytes, DecodeError> {
        let len = self.get_u32()? as usize;
        if len > max_len {
            return Err(DecodeError::TooLarge { size: len, limit: max_len });
        }
        self.get_raw(len)
    }

    /// Reads `len` bytes with no length prefix, as a zero-copy slice of the frame.
    pub fn get_raw(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        self.ensure(len)?;
        let start = self.pos;
        self.pos += len;
        // In range by `ensure` and the invariant `end <= buf.len()`.
        Ok(self.buf.slice(start..start + len))
    }

    /// Ends reading: any payload byte left unread is an error.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(DecodeError::TrailingBytes(left)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_PROTOCOL: u8 = 9;

    fn sample_frame() -> Bytes {
        let mut writer = FrameWriter::new(TEST_PROTOCOL, 42, 8 + 4 + 1 + 1 + bytes_field_len(3));
        writer.put_u64(0x0102_0304_0506_0708);
        writer.put_u32(0xdead_beef);
        writer.put_u8(7);
        writer.put_bool(true);
        writer.put_bytes(b"abc");
        writer.finish()
    }

    #[test]
    fn writer_lays_out_header_payload_and_crc() {
        let frame = sample_frame();
        assert_eq!(frame.len(), MIN_FRAME_BYTES + 8 + 4 + 1 + 1 + 4 + 3);
        assert_eq!(&frame[..4], &(frame.len() as u32).to_le_bytes());
        assert_eq!(frame[4], WIRE_VERSION);
        assert_eq!(frame[5], TEST_PROTOCOL);
        assert_eq!(frame[6], 42);
        assert_eq!(&frame[7..15], &[8, 7, 6, 5, 4, 3, 2, 1]);
        let crc = crc32c::crc32c(&frame[..frame.len() - 4]);
        assert_eq!(&frame[frame.len() - 4..], &crc.to_le_bytes());
    }

    #[test]
    fn writer_with_exact_hint_allocates_once() {
        let mut writer = FrameWriter::new(TEST_PROTOCOL, 1, 100);
        let capacity = writer.buf.capacity();
        writer.put_raw(&[0u8; 100]);
        assert_eq!(writer.buf.capacity(), capacity);
        assert_eq!(writer.len(), HEADER_BYTES + 100);
    }

    #[test]
    fn reader_reads_back_every_primitive() {
        let frame = sample_frame();
        let (msg_type, mut reader) = FrameReader::open(&frame, TEST_PROTOCOL, MAX_FRAME_BYTES).unwrap();
        assert_eq!(msg_type, 42);
        assert_eq!(reader.get_u64().unwrap(), 0x0102_0304_0506_0708);
        assert_eq!(reader.get_u32().unwrap(), 0xdead_beef);
        assert_eq!(reader.get_u8().unwrap(), 7);
        assert!(reader.get_bool("flag").unwrap());
        assert_eq!(reader.get_bytes(16).unwrap(), Bytes::from_static(b"abc"));
        reader.finish().unwrap();
    }

    #[test]
    fn get_bytes_is_a_zero_copy_slice_of_the_frame() {
        let frame = sample_frame();
        let (_, mut reader) = FrameReader::open(&frame, TEST_PROTOCOL, MAX_FRAME_BYTES).unwrap();
        reader.get_raw(8 + 4 + 1 + 1).unwrap();
        let data = reader.get_bytes(16).unwrap();
        let offset = data.as_ptr() as usize - frame.as_ptr() as usize;
        assert_eq!(offset, HEADER_BYTES + 8 + 4 + 1 + 1 + 4);
    }

    #[test]
    fn open_rejects_short_input_as_truncated() {
        for len in 0..MIN_FRAME_BYTES {
            let frame = sample_frame().slice(..len);
            assert!(matches!(
                FrameReader::open(&frame, TEST_PROTOCOL, MAX_FRAME_BYTES),
                Err(DecodeError::Truncated { .. } | DecodeError::LengthMismatch { .. })
            ));
        }
    }

    #[test]
    fn open_rejects_declared_length_above_the_limit_before_reading_more() {
        let mut frame = sample_frame().to_vec();
        frame[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = FrameReader::open(&Bytes::from(frame), TEST_PROTOCOL, MAX_FRAME_BYTES).unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { size: u32::MAX as usize, limit: MAX_FRAME_BYTES });
    }

    #[test]
    fn open_rejects_a_frame_larger_than_a_small_limit() {
        let frame = sample_frame();
        let err = FrameReader::open(&frame, TEST_PROTOCOL, 16).unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { size: frame.len(), limit: 16 });
    }

    #[test]
    fn open_rejects_length_field_mismatch() {
        let frame = sample_frame();
        let longer = [&frame[..], &[0u8]].concat();
        let err = FrameReader::open(&Bytes::from(longer), TEST_PROTOCOL, MAX_FRAME_BYTES).unwrap_err();
        assert_eq!(err, DecodeError::LengthMismatch { declared: frame.len(), actual: frame.len() + 1 });
    }

    #[test]
    fn open_rejects_unknown_version() {
        let mut frame = sample_frame().to_vec();
        frame[4] = 2;
        reseal_frame(&mut frame);
        let err = FrameReader::open(&Bytes::from(frame), TEST_PROTOCOL, MAX_FRAME_BYTES).unwrap_err();
        assert_eq!(err, DecodeError::Version(2));
    }

    #[test]
    fn open_rejects_another_protocols_frame() {
        let frame = sample_frame();
        let err = FrameReader::open(&frame, PROTOCOL_RAFT, MAX_FRAME_BYTES).unwrap_err();
        assert_eq!(err, DecodeError::WrongProtocol { expected: PROTOCOL_RAFT, found: TEST_PROTOCOL });
    }

    #[test]
    fn open_rejects_every_single_bit_flip_in_payload_or_crc() {
        let frame = sample_frame();
        for byte in HEADER_BYTES..frame.len() {
            for bit in 0..8 {
                let mut corrupted = frame.to_vec();
                corrupted[byte] ^= 1 << bit;
                let err = FrameReader::open(&Bytes::from(corrupted), TEST_PROTOCOL, MAX_FRAME_BYTES).unwrap_err();
                assert!(matches!(err, DecodeError::Checksum { .. }), "byte {byte} bit {bit}: {err:?}");
            }
        }
    }

    #[test]
    fn get_bool_rejects_values_other_than_zero_and_one() {
        let record = Bytes::from_static(&[0, 1, 2]);
        let mut reader = FrameReader::unframed(&record);
        assert!(!reader.get_bool("flag").unwrap());
        assert!(reader.get_bool("flag").unwrap());
        assert_eq!(reader.get_bool("flag"), Err(DecodeError::InvalidField { field: "flag", value: 2 }));
    }

    #[test]
    fn get_bytes_rejects_a_huge_length_without_allocating() {
        let record = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 1, 2]);
        let mut reader = FrameReader::unframed(&record);
        assert_eq!(
            reader.get_bytes(usize::MAX),
            Err(DecodeError::Truncated { offset: 4, needed: u32::MAX as usize - 2 })
        );
        let mut reader = FrameReader::unframed(&record);
        assert_eq!(reader.get_bytes(1), Err(DecodeError::TooLarge { size: u32::MAX as usize, limit: 1 }));
    }

    #[test]
    fn get_count_checks_the_limit_and_the_remaining_bytes() {
        let record = Bytes::from_static(&[3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            FrameReader::unframed(&record).get_count("ids", 8, 8),
            Err(DecodeError::Truncated { offset: 4, needed: 16 })
        );
        assert_eq!(
            FrameReader::unframed(&record).get_count("ids", 2, 1),
            Err(DecodeError::InvalidField { field: "ids", value: 3 })
        );
        assert_eq!(FrameReader::unframed(&record).get_count("ids", 8, 2), Ok(3));
    }

    #[test]
    fn getters_past_the_end_report_truncation() {
        let record = Bytes::from_static(&[1, 2, 3]);
        let mut reader = FrameReader::unframed(&record);
        assert_eq!(reader.get_u64(), Err(DecodeError::Truncated { offset: 0, needed: 5 }));
        assert_eq!(reader.get_u32(), Err(DecodeError::Truncated { offset: 0, needed: 1 }));
        assert_eq!(reader.get_raw(3).unwrap(), Bytes::from_static(&[1, 2, 3]));
        assert_eq!(reader.get_u8(), Err(DecodeError::Truncated { offset: 3, needed: 1 }));
    }

    #[test]
    fn finish_rejects_unread_bytes() {
        let record = Bytes::from_static(&[1, 2, 3]);
        let mut reader = FrameReader::unframed(&record);
        reader.get_u8().unwrap();
        assert_eq!(reader.finish(), Err(DecodeError::TrailingBytes(2)));
    }

    #[test]
    fn peek_header_reads_without_checking() {
        let frame = sample_frame();
        let header = peek_header(&frame[..HEADER_BYTES]).unwrap();
        assert_eq!(
            header,
            FrameHeader { frame_len: frame.len() as u32, version: WIRE_VERSION, protocol: TEST_PROTOCOL, msg_type: 42 }
        );
        assert_eq!(peek_header(&frame[..3]), Err(DecodeError::Truncated { offset: 3, needed: 4 }));
    }

    #[test]
    fn unframed_writer_returns_only_the_fields() {
        let mut writer = FrameWriter::unframed(9);
        writer.put_u8(1);
        writer.put_u64(2);
        assert_eq!(&writer.finish()[..], &[1, 2, 0, 0, 0, 0, 0, 0, 0]);
    }
}
