//! Feeds arbitrary bytes to both decoders and to the line reader: none may panic, and a decoded
//! message must encode to a line that decodes to the same message.
#![no_main]

use std::io::Cursor;

use hvbench_protocol::{decode_agent_line, decode_host_line, encode, Line, LineReader, ReadLine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Line::Message(m)) = decode_agent_line(data) {
        let again = encode(&m);
        assert_eq!(decode_agent_line(again.trim_end().as_bytes()), Ok(Line::Message(m)));
    }
    if let Ok(Line::Message(m)) = decode_host_line(data) {
        let again = encode(&m);
        assert_eq!(decode_host_line(again.trim_end().as_bytes()), Ok(Line::Message(m)));
    }
    let mut r = LineReader::with_max(Cursor::new(data), 256);
    while let Ok(l) = r.read_line() {
        match l {
            ReadLine::Eof => break,
            ReadLine::Line(l) => assert!(l.len() <= 256),
            ReadLine::TooLong(n) => assert!(n > 256),
        }
    }
});
