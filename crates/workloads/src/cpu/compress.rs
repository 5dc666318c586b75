//! `cpu.compress`: bzip2 compression of a generated, text-like corpus.
//!
//! bzip2 is the "bzip compression" micro of the consolidation studies: a real program whose
//! Burrows-Wheeler sort is branchy and cache-hungry, unlike the small loops of Dhrystone. It runs
//! in the `bzip2` crate's default pure-Rust backend (libbz2-rs-sys), so the agent stays a static
//! binary with no C library to link, at level 9 (900 kB blocks), the `bzip2` command's default;
//! that level needs about 7.6 MB of state while it compresses.
//!
//! The corpus is English-like text generated from a fixed seed: words of an 8192-word made-up
//! vocabulary drawn with a Zipf-like skew, in sentences and wrapped lines, with an occasional
//! number. bzip2 compresses it about 3.7 to 1, like real prose.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bzip2::write::BzEncoder;
use bzip2::Compression;

use super::SplitMix64;
use crate::{param_u64, Outcome, Params, WorkloadError};

/// bzip2's default and best level: 900 kB blocks.
const LEVEL: u32 = 9;
const DEFAULT_CORPUS_KIB: u64 = 1024;
const MAX_CORPUS_KIB: u64 = 64 * 1024;
/// Corpus shape, tuned so that bzip2 -9 compresses 1 MiB of it 3.7 to 1 (real English prose
/// gives 3.5 to 4): words in the vocabulary, the skew of their draw, one number in NUMBER_ONE_IN.
const VOCABULARY: usize = 8192;
const SKEW: i32 = 2;
const NUMBER_ONE_IN: u64 = 40;
const SEED: u64 = 0x6876_6265_6e63_6831; // "hvbench1"

/// `cpu.compress`: one iteration compresses the corpus once; the work is its size in bytes.
/// Parameter `corpus_kib` (default 1024). The first compressed output of every run is
/// decompressed and compared with the corpus, outside the measured interval.
pub(super) fn run(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let iterations = super::check_iterations(iterations)?;
    let kib = param_u64(params, "corpus_kib", DEFAULT_CORPUS_KIB)?;
    if !(1..=MAX_CORPUS_KIB).contains(&kib) {
        return Err(WorkloadError::BadParam(format!(
            "corpus_kib must be in 1..={MAX_CORPUS_KIB}, got {kib}"
        )));
    }
    let corpus = corpus(kib as usize * 1024);
    let mut out = Vec::with_capacity(corpus.len() / 2);

    let mut elapsed = Duration::ZERO;
    for i in 0..iterations {
        out.clear();
        let start = Instant::now();
        compress(&corpus, &mut out)?;
        elapsed += start.elapsed();
        if i == 0 {
            check_round_trip(&corpus, &out)?;
        }
    }
    Ok(Outcome::new(
        (corpus.len() as u64 * iterations) as f64,
        elapsed,
    ))
}

fn compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), WorkloadError> {
    let io = |e: std::io::Error| WorkloadError::Failed(format!("bzip2 compression: {e}"));
    let mut encoder = BzEncoder::new(out, Compression::new(LEVEL));
    encoder.write_all(input).map_err(io)?;
    encoder.finish().map_err(io)?;
    Ok(())
}

fn check_round_trip(corpus: &[u8], compressed: &[u8]) -> Result<(), WorkloadError> {
    let mut back = Vec::with_capacity(corpus.len());
    bzip2::read::BzDecoder::new(compressed)
        .read_to_end(&mut back)
        .map_err(|e| WorkloadError::Failed(format!("bzip2 decompression: {e}")))?;
    if back != corpus {
        return Err(WorkloadError::Failed(format!(
            "bzip2 round trip changed the data: {} bytes in, {} bytes back",
            corpus.len(),
            back.len()
        )));
    }
    Ok(())
}

/// `len` bytes of generated English-like text, the same on every system.
fn corpus(len: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(SEED);
    let vocabulary = vocabulary(&mut rng, VOCABULARY);
    let mut text = Vec::with_capacity(len + 64);
    let mut line = 0usize;
    while text.len() < len {
        let words = 4 + rng.below(16);
        for w in 0..words {
            let word: &[u8] = if rng.below(NUMBER_ONE_IN) == 0 {
                // a number: the least compressible part of real text
                &number(&mut rng)
            } else {
                // Zipf-like: with u^2 a quarter of the draws fall on the first 6% of the words.
                let u = rng.next_u64() as f64 / u64::MAX as f64;
                &vocabulary[(u.powi(SKEW) * vocabulary.len() as f64) as usize % vocabulary.len()]
            };
            if line + word.len() + 1 > 72 {
                text.push(b'\n');
                line = 0;
            } else if line > 0 {
                text.push(b' ');
                line += 1;
            }
            let start = text.len();
            text.extend_from_slice(word);
            if w == 0 {
                text[start] = text[start].to_ascii_uppercase();
            }
            line += word.len();
            if w + 1 < words && rng.below(8) == 0 {
                text.push(b',');
                line += 1;
            }
        }
        text.push(b'.');
        line += 1;
        if rng.below(12) == 0 {
            text.extend_from_slice(b"\n\n");
            line = 0;
        }
    }
    text.truncate(len);
    text
}

/// `n` made-up words of one to four syllables.
fn vocabulary(rng: &mut SplitMix64, n: usize) -> Vec<Vec<u8>> {
    const ONSETS: &[&[u8]] = &[
        b"b", b"c", b"d", b"f", b"g", b"h", b"l", b"m", b"n", b"p", b"r", b"s", b"t", b"v", b"w",
        b"st", b"th", b"ch", b"br", b"pl", b"tr", b"gr", b"",
    ];
    const VOWELS: &[&[u8]] = &[
        b"a", b"e", b"i", b"o", b"u", b"ea", b"ou", b"ai", b"io", b"y",
    ];
    const CODAS: &[&[u8]] = &[
        b"", b"", b"", b"n", b"r", b"s", b"t", b"l", b"nd", b"ng", b"st", b"rt",
    ];
    let pick =
        |rng: &mut SplitMix64, set: &[&'static [u8]]| set[rng.below(set.len() as u64) as usize];
    (0..n)
        .map(|_| {
            let syllables = 1 + rng.below(4);
            let mut word = Vec::new();
            for _ in 0..syllables {
                word.extend_from_slice(pick(rng, ONSETS));
                word.extend_from_slice(pick(rng, VOWELS));
                word.extend_from_slice(pick(rng, CODAS));
            }
            word
        })
        .collect()
}

fn number(rng: &mut SplitMix64) -> Vec<u8> {
    (1 + rng.below(100_000)).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_text_of_the_asked_length() {
        let a = corpus(100_000);
        assert_eq!(a.len(), 100_000);
        assert_eq!(a, corpus(100_000));
        assert!(a
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\n'));
    }

    #[test]
    fn corpus_compresses_like_prose() {
        let c = corpus(1 << 20);
        let mut out = Vec::new();
        compress(&c, &mut out).unwrap();
        let ratio = c.len() as f64 / out.len() as f64;
        assert!((3.0..4.0).contains(&ratio), "ratio {ratio}");
        check_round_trip(&c, &out).unwrap();
    }
}
