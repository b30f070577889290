//! Whole WebSocket frames as the server sends them (RFC 6455 §5.2): a header, then the payload,
//! in one buffer. Server frames are not masked, so a frame's bytes are the same for every
//! recipient: an event is framed once and the same bytes are written to every socket, in one
//! iovec each.

use bytes::Bytes;

/// Room kept before a payload for its header: 2 bytes, plus 8 for a 64-bit length.
const HEADER_ROOM: usize = 10;

/// A final text frame.
pub(crate) const TEXT: u8 = 0x81;
/// A close frame.
pub(crate) const CLOSE: u8 = 0x88;
/// A ping frame.
pub(crate) const PING: u8 = 0x89;
/// A pong frame.
pub(crate) const PONG: u8 = 0x8A;

/// Writes the header of a frame of `len` payload bytes at the end of `room`; returns where the
/// header starts.
fn header(room: &mut [u8; HEADER_ROOM], first: u8, len: usize) -> usize {
    let start = match len {
        0..=125 => {
            room[9] = len as u8;
            8
        }
        126..=0xFFFF => {
            room[7] = 126;
            room[8..].copy_from_slice(&(len as u16).to_be_bytes());
            6
        }
        _ => {
            room[1] = 127;
            room[2..].copy_from_slice(&(len as u64).to_be_bytes());
            0
        }
    };
    room[start] = first;
    start
}

/// A frame whose payload `write` appends to the buffer it is given: one allocation, no copy.
pub(crate) fn build<E>(
    first: u8,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Bytes, E> {
    let mut buffer = vec![0; HEADER_ROOM];
    write(&mut buffer)?;
    let mut room = [0; HEADER_ROOM];
    let start = header(&mut room, first, buffer.len() - HEADER_ROOM);
    buffer[start..HEADER_ROOM].copy_from_slice(&room[start..]);
    Ok(Bytes::from(buffer).slice(start..))
}

/// A frame carrying a copy of `payload`.
pub(crate) fn copy(first: u8, payload: &[u8]) -> Bytes {
    let built: Result<Bytes, std::convert::Infallible> = build(first, |buffer| {
        buffer.extend_from_slice(payload);
        Ok(())
    });
    built.unwrap_or_else(|never| match never {})
}

/// A close frame with `code` (none for an empty close) and a reason of at most 123 bytes.
pub(crate) fn close(code: Option<u16>, reason: &str) -> Bytes {
    let mut payload = Vec::new();
    if let Some(code) = code {
        payload.extend_from_slice(&code.to_be_bytes());
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        payload.extend_from_slice(&reason.as_bytes()[..end]);
    }
    copy(CLOSE, &payload)
}

/// The payload of a whole frame built here (tests read frames back).
#[cfg(test)]
pub(crate) fn payload(frame: &[u8]) -> &[u8] {
    let skip = match frame[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    &frame[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_take_the_shortest_length_form() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let frame = copy(TEXT, &vec![b'x'; len]);
            assert_eq!(frame.len(), header_len + len, "payload of {len}");
            assert_eq!(frame[0], TEXT);
            assert_eq!(payload(&frame).len(), len);
        }
        assert_eq!(&copy(TEXT, b"hi")[..], b"\x81\x02hi");
        assert_eq!(&copy(TEXT, &[0; 300])[..4], b"\x81\x7e\x01\x2c");
    }

    #[test]
    fn close_frames_carry_a_code_and_a_reason_cut_at_a_character() {
        assert_eq!(
            &close(Some(1009), "too big")[..],
            b"\x88\x09\x03\xf1too big"
        );
        assert_eq!(&close(None, "ignored")[..], b"\x88\x00");
        let long = "é".repeat(100);
        let frame = close(Some(1000), &long);
        assert!(frame.len() <= 2 + 125);
        assert!(std::str::from_utf8(&payload(&frame)[2..]).is_ok());
    }
}
