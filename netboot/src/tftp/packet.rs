//! TFTP wire format (RFC 1350 and the RFC 2347 option extension): decoding what clients
//! send and encoding what the server sends. Pure functions; malformed input is an error
//! value, never a panic.

/// Opcodes from RFC 1350 and RFC 2347.
const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// TFTP error codes (RFC 1350 section 5, RFC 2347 for 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    IllegalOperation = 4,
}

/// Transfer mode of a request. `netascii` is served byte for byte (see module docs of
/// [`crate::tftp`]); `mail` is obsolete and refused at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Octet,
    Netascii,
}

/// A read or write request as it arrived: the name is raw bytes, validated later by
/// [`super::path`], because refusing a bad name is a counted policy decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub filename: Vec<u8>,
    pub mode: Mode,
    /// Options in arrival order, names lowercased; non-UTF-8 options are dropped.
    pub options: Vec<(String, String)>,
}

/// A packet a client can send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientPacket {
    Read(Request),
    Write(Request),
    Ack(u16),
    Error {
        code: u16,
        message: String,
    },
    /// DATA or OACK sent to a server: valid TFTP, but never expected from a reader.
    Unexpected(u16),
}

/// Why a datagram could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {len} bytes is too short")]
    TooShort { len: usize },
    #[error("unknown opcode {opcode}")]
    UnknownOpcode { opcode: u16 },
    #[error("request field is not NUL-terminated")]
    Unterminated,
    #[error("file name contains a NUL byte")]
    NulInName,
    #[error("unsupported transfer mode {mode:?}")]
    BadMode { mode: String },
}

/// Decodes one datagram from a client.
pub fn decode(buf: &[u8]) -> Result<ClientPacket, DecodeError> {
    let (Some(&hi), Some(&lo)) = (buf.first(), buf.get(1)) else {
        return Err(DecodeError::TooShort { len: buf.len() });
    };
    let opcode = u16::from_be_bytes([hi, lo]);
    let body = &buf[2..];
    match opcode {
        RRQ => decode_request(body).map(ClientPacket::Read),
        WRQ => decode_request(body).map(ClientPacket::Write),
        ACK => match body {
            [a, b, ..] => Ok(ClientPacket::Ack(u16::from_be_bytes([*a, *b]))),
            _ => Err(DecodeError::TooShort { len: buf.len() }),
        },
        ERROR => match body {
            [a, b, rest @ ..] => {
                let text = rest.split(|&c| c == 0).next().unwrap_or_default();
                let message = String::from_utf8_lossy(text).into_owned();
                Ok(ClientPacket::Error { code: u16::from_be_bytes([*a, *b]), message })
            }
            _ => Err(DecodeError::TooShort { len: buf.len() }),
        },
        DATA | OACK => Ok(ClientPacket::Unexpected(opcode)),
        other => Err(DecodeError::UnknownOpcode { opcode: other }),
    }
}

fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
    // Every field, the last one included, must end with NUL (RFC 1350 figure 5-1).
    let Some(body) = body.strip_suffix(&[0]) else {
        return Err(DecodeError::Unterminated);
    };
    let mut fields = body.split(|&c| c == 0);
    let filename = fields.next().unwrap_or_default().to_vec();
    let raw_mode = fields.next().ok_or(DecodeError::Unterminated)?;
    let mode = match parse_mode(raw_mode) {
        Some(mode) => mode,
        None => {
            // A valid mode further on means the name itself carried a NUL byte.
            if fields.clone().any(|f| parse_mode(f).is_some()) {
                return Err(DecodeError::NulInName);
            }
            let mode = String::from_utf8_lossy(raw_mode).into_owned();
            return Err(DecodeError::BadMode { mode });
        }
    };
    let rest: Vec<&[u8]> = fields.collect();
    let options = rest
        .chunks(2)
        .filter_map(|pair| match pair {
            [name, value] => Some((
                std::str::from_utf8(name).ok()?.to_ascii_lowercase(),
                std::str::from_utf8(value).ok()?.to_string(),
            )),
            _ => None,
        })
        .collect();
    Ok(Request { filename, mode, options })
}

fn parse_mode(raw: &[u8]) -> Option<Mode> {
    if raw.eq_ignore_ascii_case(b"octet") {
        Some(Mode::Octet)
    } else if raw.eq_ignore_ascii_case(b"netascii") {
        Some(Mode::Netascii)
    } else {
        None
    }
}

/// Header bytes before the payload of a DATA packet.
pub const DATA_HEADER: usize = 4;

/// Writes a DATA header for `block` into the first four bytes of `packet`.
pub fn write_data_header(packet: &mut [u8], block: u16) {
    if let Some(head) = packet.get_mut(..DATA_HEADER) {
        head[..2].copy_from_slice(&DATA.to_be_bytes());
        head[2..].copy_from_slice(&block.to_be_bytes());
    }
}

/// Encodes an ERROR packet.
pub fn encode_error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.extend_from_slice(&ERROR.to_be_bytes());
    out.extend_from_slice(&(code as u16).to_be_bytes());
    out.extend(message.bytes().filter(|&b| b != 0));
    out.push(0);
    out
}

/// Encodes an OACK packet with the acknowledged options, in the given order.
pub fn encode_oack(options: &[(&str, String)]) -> Vec<u8> {
    let mut out = OACK.to_be_bytes().to_vec();
    for (name, value) in options {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_read_request_with_options() {
        let pkt = b"\x00\x01abc/start.elf\x00OCTET\x00TSize\x000\x00blksize\x001468\x00";
        let ClientPacket::Read(req) = decode(pkt).expect("decodes") else { panic!("not RRQ") };
        assert_eq!(req.filename, b"abc/start.elf");
        assert_eq!(req.mode, Mode::Octet);
        assert_eq!(
            req.options,
            vec![("tsize".into(), "0".into()), ("blksize".into(), "1468".into())]
        );
    }

    #[test]
    fn rejects_malformed_datagrams() {
        let cases: &[(&[u8], DecodeError)] = &[
            (b"", DecodeError::TooShort { len: 0 }),
            (b"\x00", DecodeError::TooShort { len: 1 }),
            (b"\x00\x04\x01", DecodeError::TooShort { len: 3 }),
            (b"\x00\x09", DecodeError::UnknownOpcode { opcode: 9 }),
            (b"\x00\x01file\x00octet", DecodeError::Unterminated),
            (b"\x00\x01file\x00", DecodeError::Unterminated),
            (b"\x00\x01a\x00../x\x00octet\x00", DecodeError::NulInName),
            (b"\x00\x01a\x00mail\x00", DecodeError::BadMode { mode: "mail".into() }),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes).as_ref(), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn decodes_ack_and_client_error() {
        assert_eq!(decode(b"\x00\x04\xff\xfe"), Ok(ClientPacket::Ack(0xfffe)));
        let got = decode(b"\x00\x05\x00\x00early\x00").expect("decodes");
        assert_eq!(got, ClientPacket::Error { code: 0, message: "early".into() });
        assert_eq!(
            decode(b"\x00\x05\x00\x08"),
            Ok(ClientPacket::Error { code: 8, message: String::new() })
        );
    }

    #[test]
    fn encodes_error_and_oack() {
        assert_eq!(encode_error(ErrorCode::AccessViolation, "no"), b"\x00\x05\x00\x02no\x00");
        let oack = encode_oack(&[("blksize", "1468".into()), ("tsize", "7".into())]);
        assert_eq!(oack, b"\x00\x06blksize\x001468\x00tsize\x007\x00");
    }
}
