//! Writing heads: header lines, numbers without `fmt`, runs of unchanged lines, reason phrases.

/// Always inlined: called for a handful of headers on every request, mostly with constant
/// names, where the copies of `": "` and CRLF become plain stores (left to itself, the compiler
/// keeps it a call, which costs about 35 more instructions per header under callgrind).
#[inline(always)]
pub fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Copies the header lines a proxy passes on unchanged straight from the head they were parsed
/// from, a run of adjacent lines at a time, instead of re-assembling each from name and value.
/// Anything else written between them goes through [`RawLines::header`], which keeps the order.
pub struct RawLines<'b> {
    head: &'b [u8],
    run: LineRun,
}

impl<'b> RawLines<'b> {
    /// `head` is the buffer the headers were parsed from.
    pub fn new(head: &'b [u8]) -> Self {
        RawLines {
            head,
            run: LineRun::default(),
        }
    }

    /// Passes `h` on as received.
    pub fn keep(&mut self, out: &mut Vec<u8>, h: &httparse::Header<'_>) {
        self.run.keep(self.head, out, h)
    }

    /// Writes a header of the proxy's own after the lines kept so far.
    pub fn header(&mut self, out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        self.run.flush(self.head, out);
        header(out, name, value);
    }

    /// Writes out the lines kept so far; call before writing anything else to `out`.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        self.run.flush(self.head, out)
    }
}

/// The run of adjacent unchanged lines not yet copied, for a writer that is handed the head
/// with each call instead of holding it (see [`RawLines`]).
#[derive(Default)]
pub struct LineRun {
    run: std::ops::Range<usize>,
}

impl LineRun {
    /// Passes `h` (parsed from `head`) on as received.
    pub fn keep(&mut self, head: &[u8], out: &mut Vec<u8>, h: &httparse::Header<'_>) {
        match line_of(head, h) {
            Some(line) if !self.run.is_empty() && self.run.end == line.start => self.run.end = line.end,
            Some(line) => {
                self.flush(head, out);
                self.run = line;
            }
            // Not a plain `name: value CRLF` line of this head (trailing blanks, a bare LF):
            // written out afresh.
            None => {
                self.flush(head, out);
                header(out, h.name.as_bytes(), h.value);
            }
        }
    }

    /// Writes out the lines kept so far; call before writing anything else to `out`.
    pub fn flush(&mut self, head: &[u8], out: &mut Vec<u8>) {
        if !self.run.is_empty() {
            out.extend_from_slice(&head[self.run.clone()]);
            self.run = 0..0;
        }
    }
}

/// Where `h`'s whole line sits in `head`, CRLF included, when its value ends the line.
fn line_of(head: &[u8], h: &httparse::Header<'_>) -> Option<std::ops::Range<usize>> {
    let base = head.as_ptr() as usize;
    let start = (h.name.as_ptr() as usize).checked_sub(base)?;
    let value_end = (h.value.as_ptr() as usize).checked_sub(base)? + h.value.len();
    (value_end > start + h.name.len() && head.get(value_end..value_end + 2)? == b"\r\n").then_some(start..value_end + 2)
}

pub fn header_u64(out: &mut Vec<u8>, name: &[u8], value: u64) {
    let mut b = itoa::Buffer::new();
    header(out, name, b.format(value).as_bytes());
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_lines_copy_kept_runs_and_rewrite_the_rest() {
        let head = b"GET / HTTP/1.1\r\nA: 1\r\nB:2\r\nDrop: x\r\nC: 3 \r\nD: 4\nE: 5\r\nF: 6\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(head).unwrap();
        let mut out = Vec::new();
        let mut lines = RawLines::new(head);
        for h in req.headers.iter() {
            match h.name {
                "Drop" => {}
                "E" => lines.header(&mut out, b"E", b"five"),
                _ => lines.keep(&mut out, h),
            }
        }
        lines.flush(&mut out);
        // A and B pass as one run, verbatim; C (trailing blank) and D (bare LF) are rewritten.
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A: 1\r\nB:2\r\nC: 3\r\nD: 4\r\nE: five\r\nF: 6\r\n"
        );
    }
}
