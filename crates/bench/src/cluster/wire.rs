//! The little of RFC 6455 the lean load generator needs, client side: the upgrade request and
//! its answer, masked text frames out, unmasked frames in. Frames are tiny (a login is under
//! 1 KiB, a `"ping"` 6 bytes), so no buffer outlives a read: a session keeps no per-socket
//! buffer the way a general WebSocket library does (the full client's tungstenite keeps a
//! 4 KiB read buffer per socket, beside the SDK's session core and its task).

use std::net::SocketAddr;

/// The upgrade request for `/ws` on `addr`. The key is fixed: the server only echoes a hash
/// of it, which this client does not need to check (it talks to timd on loopback).
pub fn upgrade_request(addr: SocketAddr) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// What the upgrade answer so far says: `Some(Ok(n))` once complete (`n`: bytes it took),
/// `Some(Err(line))` if it is not `101`, `None` while its head is incomplete.
pub fn upgrade_answer(data: &[u8]) -> Option<Result<usize, String>> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let status = data[..end]
        .split(|&b| b == b'\r')
        .next()
        .unwrap_or_default();
    Some(if status.starts_with(b"HTTP/1.1 101") {
        Ok(end)
    } else {
        Err(String::from_utf8_lossy(status).into_owned())
    })
}

pub const TEXT: u8 = 0x1;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// Appends one final frame of `opcode` carrying `payload` to `out`, masked with `mask` (a
/// client must mask; any key will do).
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// One frame read from the server.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub opcode: u8,
    pub payload: &'a [u8],
}

/// The next complete frame at the start of `data` and the bytes it took; `Ok(None)` while
/// incomplete; `Err` for what a server must not send (a masked or fragmented frame, a frame
/// over `max` bytes).
pub fn decode(data: &[u8], max: usize) -> Result<Option<(Frame<'_>, usize)>, &'static str> {
    if data.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (data[0], data[1]);
    if b0 & 0x80 == 0 || b0 & 0x0F == 0 {
        return Err("fragmented frame");
    }
    if b1 & 0x80 != 0 {
        return Err("masked frame from the server");
    }
    let (len, head) = match b1 & 0x7F {
        126 if data.len() >= 4 => (u16::from_be_bytes([data[2], data[3]]) as usize, 4),
        127 if data.len() >= 10 => {
            let mut b = [0; 8];
            b.copy_from_slice(&data[2..10]);
            (
                usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX),
                10,
            )
        }
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if len > max {
        return Err("frame too large");
    }
    if data.len() < head + len {
        return Ok(None);
    }
    Ok(Some((
        Frame {
            opcode: b0 & 0x0F,
            payload: &data[head..head + len],
        },
        head + len,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server side's view of a client frame: unmask it.
    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let (len, head) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        assert_eq!(frame[1] & 0x80, 0x80, "client frames are masked");
        let mask = &frame[head..head + 4];
        let body = &frame[head + 4..];
        assert_eq!(body.len(), len);
        (
            frame[0],
            body.iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect(),
        )
    }

    #[test]
    fn client_frames_are_masked_with_the_right_length_form() {
        let mut out = Vec::new();
        encode(&mut out, TEXT, br#""pong""#, [1, 2, 3, 4]);
        assert_eq!(out.len(), 2 + 4 + 6);
        assert_eq!(unmask(&out), (0x81, br#""pong""#.to_vec()));
        // A login (a UserSig is a few hundred bytes) takes the 16-bit length.
        let login = vec![b'x'; 400];
        let mut out = Vec::new();
        encode(&mut out, TEXT, &login, [9, 8, 7, 6]);
        assert_eq!(out[1], 0x80 | 126);
        assert_eq!(unmask(&out), (0x81, login));
    }

    #[test]
    fn server_frames_decode_whole_split_or_refused() {
        let ping = [0x81, 6, b'"', b'p', b'i', b'n', b'g', b'"'];
        let mut two = ping.to_vec();
        two.extend_from_slice(&[0x88, 2, 0x03, 0xF4]);
        let (f, used) = decode(&two, 1024).unwrap().unwrap();
        assert_eq!((f.opcode, f.payload, used), (TEXT, &br#""ping""#[..], 8));
        let (f, used) = decode(&two[used..], 1024).unwrap().unwrap();
        assert_eq!((f.opcode, f.payload, used), (CLOSE, &[0x03, 0xF4][..], 4));
        // Split anywhere: incomplete, never wrong.
        for cut in 0..ping.len() {
            assert_eq!(decode(&ping[..cut], 1024), Ok(None));
        }
        let mut long = vec![0x81, 126, 0x01, 0x2C];
        long.extend(std::iter::repeat_n(b'a', 300));
        assert_eq!(decode(&long[..100], 1024), Ok(None));
        assert_eq!(decode(&long, 1024).unwrap().unwrap().0.payload.len(), 300);
        assert!(decode(&long, 200).is_err());
        assert!(decode(&[0x01, 1, b'a'], 1024).is_err(), "fragment");
        assert!(
            decode(&[0x81, 0x81, 0, 0, 0, 0, b'a'], 1024).is_err(),
            "masked"
        );
    }

    #[test]
    fn the_upgrade_answer_is_read_up_to_its_blank_line() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n\x81\x06";
        assert_eq!(upgrade_answer(&ok[..20]), None);
        assert_eq!(upgrade_answer(ok), Some(Ok(ok.len() - 2)));
        let full = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert_eq!(
            upgrade_answer(full),
            Some(Err("HTTP/1.1 503 Service Unavailable".into()))
        );
    }
}
