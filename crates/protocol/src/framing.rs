//! Reading bounded lines from a byte stream.

use std::io::{self, BufRead};

use crate::MAX_LINE;

/// One line read by [`LineReader`].
#[derive(Debug, PartialEq)]
pub enum ReadLine {
    /// A complete line, without its newline (a last line without newline at end of stream counts).
    Line(Vec<u8>),
    /// A line longer than [`MAX_LINE`]; its bytes were discarded up to the next newline.
    TooLong(usize),
    /// The stream ended.
    Eof,
}

/// Reads newline-terminated lines, never holding more than [`MAX_LINE`] bytes of one line.
pub struct LineReader<R> {
    inner: R,
    max: usize,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            max: MAX_LINE,
        }
    }

    /// Same, with a smaller bound (tests, or streams known to carry short lines).
    pub fn with_max(inner: R, max: usize) -> Self {
        Self { inner, max }
    }

    /// Reads the next line. I/O errors other than interruption are passed on.
    pub fn read_line(&mut self) -> io::Result<ReadLine> {
        let mut line = Vec::new();
        let mut total = 0usize;
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(if total == 0 {
                    ReadLine::Eof
                } else if total > self.max {
                    ReadLine::TooLong(total)
                } else {
                    ReadLine::Line(line)
                });
            }
            let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            total += chunk.len();
            if total <= self.max {
                line.extend_from_slice(chunk);
            } else {
                line = Vec::new();
            }
            let consumed = found.unwrap_or(chunk.len());
            self.inner.consume(consumed);
            if found.is_some() {
                return Ok(if total > self.max {
                    ReadLine::TooLong(total)
                } else {
                    ReadLine::Line(line)
                });
            }
        }
    }
}
