//! The client's response head as HTTP/1.1 text. The response step hands the fields over
//! through `HeadSink`; lines the upstream sent and ringway keeps unchanged are copied from its
//! head a run at a time, and the framing lines (Content-Length or chunked, Connection) follow
//! from what the client speaks.

use crate::exchange::client_side::{BodyLength, HeadSink};
use crate::http::write::{header, header_u64, LineRun};

/// An HTTP/1.1 response head being written into `out`.
pub struct H1Head {
    pub out: Vec<u8>,
    run: LineRun,
    status: u16,
    /// The client spoke HTTP/1.0: no chunked bodies, keep-alive only when asked for.
    http10: bool,
}

impl H1Head {
    pub fn new(out: Vec<u8>, http10: bool) -> Self {
        H1Head {
            out,
            run: LineRun::default(),
            status: 0,
            http10,
        }
    }
}

impl HeadSink for H1Head {
    fn start(&mut self, status: u16, reason: &str) {
        self.out.clear();
        self.run = LineRun::default();
        self.status = status;
        self.out.extend_from_slice(b"HTTP/1.1 ");
        self.out
            .extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(reason.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn keep(&mut self, raw: &[u8], h: &httparse::Header<'_>) {
        self.run.keep(raw, &mut self.out, h);
    }

    fn field(&mut self, raw: &[u8], name: &[u8], value: &[u8]) {
        self.run.flush(raw, &mut self.out);
        header(&mut self.out, name, value);
    }

    fn finish(&mut self, raw: &[u8], length: BodyLength, close: bool) {
        self.run.flush(raw, &mut self.out);
        let out = &mut self.out;
        match length {
            BodyLength::Exactly(n) => header_u64(out, b"Content-Length", n),
            BodyLength::UntilEnd if !self.http10 => header(out, b"Transfer-Encoding", b"chunked"),
            BodyLength::UntilEnd | BodyLength::Unstated => {}
        }
        if self.status == 101 {
            header(out, b"Connection", b"upgrade");
        } else if close {
            header(out, b"Connection", b"close");
        } else if self.http10 {
            header(out, b"Connection", b"keep-alive");
        }
        out.extend_from_slice(b"\r\n");
    }
}
