//! A copy of a response body taken while it streams to the client, for the cache. The relay
//! hands over the upstream's bytes as they arrive, framing included; the copy undoes chunked
//! framing, stops at the body's end, and gives up (dropping what it held) once the body grows
//! past `max_object`. It is complete only when the body ended as its framing says.

use crate::body::chunked::{ChunkedDecoder, Step};
use crate::http::Framing;

enum Shape {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// The body being copied.
pub struct Fill {
    body: Vec<u8>,
    max: usize,
    shape: Shape,
    /// Too large, or framing that did not parse: nothing will be stored.
    given_up: bool,
}

impl Fill {
    /// A copy of a body framed as `framing`; `None` when it cannot be kept (a stated length
    /// above `max`).
    pub fn new(framing: Framing, max: usize) -> Option<Fill> {
        let shape = match framing {
            Framing::Length(n) if n > max as u64 => return None,
            Framing::Length(n) => Shape::Length(n),
            Framing::None => Shape::Length(0),
            Framing::Chunked => Shape::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose => Shape::UntilClose,
        };
        let start = match shape {
            Shape::Length(n) => n as usize,
            _ => 16 * 1024,
        };
        Some(Fill {
            body: Vec::with_capacity(start),
            max,
            shape,
            given_up: false,
        })
    }

    /// Whether bytes are still being kept (once given up, the relay may splice again).
    pub fn active(&self) -> bool {
        !self.given_up
    }

    /// Takes the next bytes of the body as the upstream sent them.
    pub fn feed(&mut self, mut wire: &[u8]) {
        if self.given_up {
            return;
        }
        match &mut self.shape {
            Shape::Length(left) => {
                let n = (*left).min(wire.len() as u64) as usize;
                *left -= n as u64;
                self.body.extend_from_slice(&wire[..n]);
            }
            Shape::UntilClose => self.body.extend_from_slice(wire),
            Shape::Chunked(d) => {
                while !wire.is_empty() && !d.is_done() {
                    match d.step(wire) {
                        Ok(Step::Data(n)) => {
                            self.body.extend_from_slice(&wire[..n]);
                            wire = &wire[n..];
                        }
                        Ok(Step::Skip(n)) | Ok(Step::Done(n)) => wire = &wire[n..],
                        Err(_) => {
                            self.give_up();
                            return;
                        }
                    }
                }
            }
        }
        if self.body.len() > self.max {
            self.give_up();
        }
    }

    fn give_up(&mut self) {
        self.given_up = true;
        self.body = Vec::new();
    }

    /// The whole body, if it arrived whole and within bounds. `clean_end` says the relay saw
    /// the body end as its framing says (for a body that runs until the upstream closes, the
    /// close itself).
    pub fn finish(self, clean_end: bool) -> Option<Vec<u8>> {
        let whole = match &self.shape {
            Shape::Length(left) => *left == 0,
            Shape::Chunked(d) => d.is_done(),
            Shape::UntilClose => true,
        };
        (clean_end && whole && !self.given_up).then_some(self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_is_decoded_and_must_end() {
        let mut f = Fill::new(Framing::Chunked, 100).unwrap();
        f.feed(b"3\r\nabc\r\n2\r");
        f.feed(b"\nde\r\n0\r\n\r\nJUNK");
        assert_eq!(f.finish(true).unwrap(), b"abcde");
        let mut f = Fill::new(Framing::Chunked, 100).unwrap();
        f.feed(b"3\r\nabc\r\n");
        assert!(f.finish(true).is_none(), "no last chunk: cut short");
    }

    #[test]
    fn length_bounds() {
        assert!(Fill::new(Framing::Length(101), 100).is_none());
        let mut f = Fill::new(Framing::Length(4), 100).unwrap();
        f.feed(b"ab");
        assert!(f.finish(true).is_none());
        let mut f = Fill::new(Framing::UntilClose, 4).unwrap();
        f.feed(b"abc");
        f.feed(b"de");
        assert!(!f.active());
        assert!(f.finish(true).is_none());
        let mut f = Fill::new(Framing::Length(2), 4).unwrap();
        f.feed(b"abcd");
        assert_eq!(f.finish(false), None, "an errored relay stores nothing");
    }
}
