//! A streaming encoder with bounded memory: input arrives in chunks, compressed bytes collect in
//! a buffer the caller drains after each step, and `finish` writes the end of the stream. The
//! memory per stream is the encoder's window and tables, fixed at creation: zlib's 32 KiB window
//! for gzip, and a 512 KiB window for brotli and zstd (their defaults grow with the level up to
//! 4 and 8 MiB, which a proxy holding thousands of streams cannot afford).

use crate::config::{CompressPlan, Encoding};
use std::io::{self, Write};

/// log2 of the brotli and zstd window: 512 KiB.
const WINDOW_LOG: u32 = 19;
/// Brotli's own staging buffer before bytes reach the output.
const BROTLI_BUFFER: usize = 16 * 1024;

pub struct Encoder {
    state: State,
}

enum State {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    /// `finish` ran: only the last output is left.
    Finished(Vec<u8>),
}

impl Encoder {
    pub fn new(encoding: Encoding, plan: &CompressPlan) -> io::Result<Encoder> {
        let out = Vec::new();
        let state = match encoding {
            Encoding::Gzip => State::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(plan.gzip_level),
            )),
            Encoding::Br => State::Br(Box::new(brotli::CompressorWriter::new(
                out,
                BROTLI_BUFFER,
                plan.brotli_level,
                WINDOW_LOG,
            ))),
            Encoding::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(out, plan.zstd_level)?;
                z.window_log(WINDOW_LOG)?;
                State::Zstd(z)
            }
        };
        Ok(Encoder { state })
    }

    /// Compresses `input`; what the encoder emits collects in [`Encoder::output`].
    pub fn push(&mut self, input: &[u8]) -> io::Result<()> {
        match &mut self.state {
            State::Gzip(e) => e.write_all(input),
            State::Br(e) => e.write_all(input),
            State::Zstd(e) => e.write_all(input),
            State::Finished(_) => Err(io::Error::other("compressed stream already finished")),
        }
    }

    /// Emits everything pushed so far in a form the client can decode now (a sync flush), so
    /// a slow stream reaches the client as it arrives instead of waiting for the window to fill.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            State::Gzip(e) => e.flush(),
            State::Br(e) => e.flush(),
            State::Zstd(e) => e.flush(),
            State::Finished(_) => Ok(()),
        }
    }

    /// Ends the stream (gzip trailer, brotli last block, zstd frame end).
    pub fn finish(&mut self) -> io::Result<()> {
        let out = match std::mem::replace(&mut self.state, State::Finished(Vec::new())) {
            State::Gzip(e) => e.finish()?,
            State::Br(e) => e.into_inner(),
            State::Zstd(e) => e.finish()?,
            State::Finished(out) => out,
        };
        self.state = State::Finished(out);
        Ok(())
    }

    /// The compressed bytes produced and not yet taken; the caller clears it after sending.
    pub fn output(&mut self) -> &mut Vec<u8> {
        match &mut self.state {
            State::Gzip(e) => e.get_mut(),
            State::Br(e) => e.get_mut(),
            State::Zstd(e) => e.get_mut(),
            State::Finished(out) => out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(encoding: Encoding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            Encoding::Gzip => flate2::read::GzDecoder::new(data).read_to_end(&mut out),
            Encoding::Br => brotli::Decompressor::new(data, 4096).read_to_end(&mut out),
            Encoding::Zstd => zstd::stream::read::Decoder::new(data).and_then(|mut d| d.read_to_end(&mut out)),
        }
        .expect("decodes");
        out
    }

    /// Pieces pushed with flushes between them decode to the whole, and a flush makes every
    /// byte pushed so far decodable before the end.
    #[test]
    fn chunks_round_trip_for_every_encoding() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i} of {} ", i % 97).into_bytes())
            .collect();
        for encoding in Encoding::ALL {
            let mut e = Encoder::new(encoding, &CompressPlan::default()).expect("encoder");
            let mut sent = Vec::new();
            for (n, piece) in text.chunks(50_000).enumerate() {
                e.push(piece).expect("push");
                if n % 3 == 0 {
                    e.flush().expect("flush");
                }
                sent.append(e.output());
            }
            e.finish().expect("finish");
            sent.append(e.output());
            assert!(sent.len() < text.len() / 4, "{encoding:?} compressed to {}", sent.len());
            assert_eq!(decode(encoding, &sent), text, "{encoding:?}");
            assert!(e.push(b"x").is_err());
        }
    }
}
