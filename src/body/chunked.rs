//! Incremental chunked-body decoder, strict enough that no two readers disagree on where the body
//! ends: hex sizes without overflow, extensions of visible characters only, CRLF everywhere.
//!
//! States: `Size` (hex digits) → `Ext` (after `;`) → `SizeLf` → `Data(n)` → `DataCr` → `DataLf` →
//! back to `Size`; a zero size goes to `Trailer` (header lines until an empty one) → `Done`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size {
        digits: u8,
        value: u64,
    },
    /// Inside chunk extensions; `quoted` while in a quoted-string, `escaped` after its backslash.
    Ext {
        value: u64,
        quoted: bool,
        escaped: bool,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (`empty` true) or inside one.
    Trailer {
        line_start: bool,
    },
    TrailerLf {
        line_was_empty: bool,
    },
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    BadSize,
    SizeOverflow,
    BadExtension,
    BadLineEnding,
    TrailerTooLarge,
}

impl ChunkError {
    pub fn reason(self) -> &'static str {
        match self {
            ChunkError::BadSize => "malformed chunk size",
            ChunkError::SizeOverflow => "chunk size too large",
            ChunkError::BadExtension => "malformed chunk extension",
            ChunkError::BadLineEnding => "chunked body line does not end with CRLF",
            ChunkError::TrailerTooLarge => "chunked trailer too large",
        }
    }
}

/// One step over input: `Data(n)` — the next n input bytes are body data; `Skip(n)` — n framing
/// bytes consumed; `Done(n)` — n framing bytes consumed and the body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Data(usize),
    Skip(usize),
    Done(usize),
}

pub struct ChunkedDecoder {
    state: State,
    trailer_bytes: usize,
}

const MAX_TRAILER: usize = 16 * 1024;
/// 15 hex digits: sizes up to 2^60, far beyond any real chunk, and never an overflow.
const MAX_SIZE_DIGITS: u8 = 15;

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0, value: 0 },
            trailer_bytes: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Advances over a prefix of `input` (non-empty unless done).
    pub fn step(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        if let State::Data(n) = self.state {
            let take = (n.min(input.len() as u64)) as usize;
            self.state = if take as u64 == n {
                State::DataCr
            } else {
                State::Data(n - take as u64)
            };
            return Ok(Step::Data(take));
        }
        let mut used = 0;
        while used < input.len() {
            let b = input[used];
            used += 1;
            self.state = match self.state {
                State::Size { digits, value } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= MAX_SIZE_DIGITS {
                            return Err(ChunkError::SizeOverflow);
                        }
                        let d = (b as char).to_digit(16).unwrap() as u64;
                        State::Size {
                            digits: digits + 1,
                            value: value << 4 | d,
                        }
                    }
                    _ if digits == 0 => return Err(ChunkError::BadSize),
                    // Whitespace before an extension is tolerated by RFC 9112 (BWS).
                    b';' | b' ' | b'\t' => State::Ext {
                        value,
                        quoted: false,
                        escaped: false,
                    },
                    b'\r' => State::SizeLf { value },
                    _ => return Err(ChunkError::BadSize),
                },
                // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
                State::Ext {
                    value, quoted: false, ..
                } => match b {
                    b'\r' => State::SizeLf { value },
                    b'"' => State::Ext {
                        value,
                        quoted: true,
                        escaped: false,
                    },
                    b';' | b'=' | b' ' | b'\t' => State::Ext {
                        value,
                        quoted: false,
                        escaped: false,
                    },
                    _ if crate::http::is_token_byte(b) => State::Ext {
                        value,
                        quoted: false,
                        escaped: false,
                    },
                    _ => return Err(ChunkError::BadExtension),
                },
                State::Ext {
                    value,
                    quoted: true,
                    escaped,
                } => match b {
                    // A line may not end inside a quoted-string.
                    b'\r' | b'\n' | 0x00..=0x08 | 0x0a..=0x1f | 0x7f => return Err(ChunkError::BadExtension),
                    _ if escaped => State::Ext {
                        value,
                        quoted: true,
                        escaped: false,
                    },
                    b'\\' => State::Ext {
                        value,
                        quoted: true,
                        escaped: true,
                    },
                    b'"' => State::Ext {
                        value,
                        quoted: false,
                        escaped: false,
                    },
                    _ => State::Ext {
                        value,
                        quoted: true,
                        escaped: false,
                    },
                },
                State::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnding);
                    }
                    if value == 0 {
                        State::Trailer { line_start: true }
                    } else {
                        self.state = State::Data(value);
                        return Ok(Step::Skip(used));
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::BadLineEnding);
                    }
                    State::DataLf
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnding);
                    }
                    State::Size { digits: 0, value: 0 }
                }
                State::Trailer { line_start } => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > MAX_TRAILER {
                        return Err(ChunkError::TrailerTooLarge);
                    }
                    match b {
                        b'\r' => State::TrailerLf {
                            line_was_empty: line_start,
                        },
                        b'\n' => return Err(ChunkError::BadLineEnding),
                        _ => State::Trailer { line_start: false },
                    }
                }
                State::TrailerLf { line_was_empty } => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnding);
                    }
                    if line_was_empty {
                        self.state = State::Done;
                        return Ok(Step::Done(used));
                    }
                    State::Trailer { line_start: true }
                }
                State::Data(_) | State::Done => unreachable!("handled above"),
            };
        }
        Ok(Step::Skip(used))
    }
}

/// Appends a chunk header for `len` data bytes (`{len:x}\r\n`).
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes all of `input` fed in pieces of `piece` bytes; returns (data, bytes after the end).
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut data = Vec::new();
        let mut pos = 0;
        while pos < input.len() && !d.is_done() {
            let end = (pos + piece).min(input.len());
            let mut p = pos;
            while p < end && !d.is_done() {
                match d.step(&input[p..end])? {
                    Step::Data(n) => {
                        data.extend_from_slice(&input[p..p + n]);
                        p += n;
                    }
                    Step::Skip(n) | Step::Done(n) => p += n,
                }
            }
            pos = p;
        }
        assert!(d.is_done(), "incomplete");
        Ok((data, input.len() - pos))
    }

    #[test]
    fn decodes_in_any_split() {
        let body = b"5\r\nhello\r\n6;name=val; q=\"a \\\"b\\\" ;c\"\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, 100] {
            let (data, rest) = decode(body, piece).unwrap();
            assert_eq!(data, b"hello world");
            assert_eq!(rest, 4, "piece {piece}");
        }
    }

    #[test]
    fn refuses_ambiguous_framing() {
        let bad: [&[u8]; 12] = [
            b"5;a=\"x\r\nhello\r\n0\r\n\r\n",
            b"5;a=(x)\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\\\r\nhello\r\n0\r\n\r\n",
            b"x\r\n",
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"1000000000000000\r\n",
            b"5;ext\x00\r\n",
            b"5;ext\nhello\r\n",
            b"0\r\nTrailer: x\n\r\n",
            b"-5\r\n",
        ];
        for input in bad {
            assert!(decode(input, 64).is_err(), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn chunk_headers() {
        let mut out = Vec::new();
        write_chunk_header(&mut out, 0x1a2b);
        write_chunk_header(&mut out, 0);
        assert_eq!(out, b"1a2b\r\n0\r\n");
    }
}
