//! The chunked decoder fed the same bytes whole and in pieces (sizes from the first input bytes):
//! the verdict, the data and where the body ends must not depend on how reads split the stream.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::body::chunked::{ChunkedDecoder, Step};

#[derive(Debug, PartialEq)]
enum Outcome {
    Done { data: Vec<u8>, used: usize },
    Error,
    NeedMore { data: Vec<u8> },
}

fn run(input: &[u8], pieces: &[u8]) -> Outcome {
    let mut d = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < input.len() {
        // The next read hands the decoder at most this many bytes.
        let len = match pieces.get(k) {
            Some(&p) => (p as usize % 17 + 1).min(input.len() - pos),
            None => input.len() - pos,
        };
        k += 1;
        let read = &input[pos..pos + len];
        let mut p = 0;
        while p < read.len() && !d.is_done() {
            match d.step(&read[p..]) {
                Ok(Step::Data(n)) => {
                    data.extend_from_slice(&read[p..p + n]);
                    p += n;
                }
                Ok(Step::Skip(n)) => p += n,
                Ok(Step::Done(n)) => p += n,
                Err(_) => return Outcome::Error,
            }
        }
        pos += p;
        if d.is_done() {
            return Outcome::Done { data, used: pos };
        }
    }
    Outcome::NeedMore { data }
}

fuzz_target!(|input: &[u8]| {
    let split = input.first().map_or(0, |&b| (b as usize % 8).min(input.len() - 1));
    let (pieces, body) = input.split_at(split + usize::from(!input.is_empty()));
    let whole = run(body, &[]);
    let split = run(body, pieces);
    match (&whole, &split) {
        // An error found later in a split stream may leave more data decoded before it: compare
        // verdicts only.
        (Outcome::Error, Outcome::Error) => {}
        _ => assert_eq!(whole, split, "split reads changed the decoding"),
    }
});
