//! The host–agent protocol of hvbench.
//!
//! One protocol runs over any byte stream (a pipe, a virtio-serial port, a serial console, an SSH
//! session). Each message is one line: the prefix [`PREFIX`] followed by a JSON object that carries
//! the protocol version `v` and a `type`. Lines without the prefix (kernel messages on a console)
//! are not messages and are handed back as [`Line::Other`]; lines longer than [`MAX_LINE`] are
//! rejected without being buffered whole.
//!
//! The sequence: the agent sends [`Hello`]; the host sends a [`Job`]; the agent answers with a
//! [`SampleMsg`] per repetition and [`Done`] (or [`ErrorMsg`]); then it waits for another job or
//! [`HostMessage::Shutdown`].
//!
//! Decoding is total: whatever bytes arrive, [`decode_agent_line`] and [`decode_host_line`] return
//! a value or a [`ProtocolError`], never panic.
//!
//! ```
//! use hvbench_protocol::{encode, decode_agent_line, AgentMessage, Done, Line};
//! let line = encode(&AgentMessage::Done(Done { job: 7, iterations: None }));
//! assert!(line.starts_with("@hvb1 "));
//! match decode_agent_line(line.trim_end().as_bytes()).unwrap() {
//!     Line::Message(AgentMessage::Done(d)) => assert_eq!(d.job, 7),
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```

mod framing;
mod messages;

pub use framing::{LineReader, ReadLine};
pub use messages::*;

/// The version of the protocol spoken by this build; carried by every message as `v`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Every protocol line starts with this prefix; anything else on the stream is ignored.
pub const PREFIX: &str = "@hvb1 ";
/// The longest line accepted, prefix included. Longer lines are an error, not a buffer.
pub const MAX_LINE: usize = 64 * 1024;

/// Why a line could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    /// line of {0} bytes exceeds the limit of MAX_LINE bytes
    #[error("line of {0} bytes exceeds the limit of {MAX_LINE} bytes")]
    LineTooLong(usize),
    /// The line is not UTF-8.
    #[error("line is not valid UTF-8")]
    NotUtf8,
    /// The JSON could not be parsed into a message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer speaks another protocol version.
    #[error("protocol version {got} received, this build speaks {PROTOCOL_VERSION}: use an agent built with the same hvbench")]
    Version { got: u32 },
    /// A field holds a value that no honest peer sends (a negative time, a non-finite number).
    #[error("invalid field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// What one line of the stream turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<M> {
    /// A protocol message.
    Message(M),
    /// A line without the prefix: console noise, kept for logs.
    Other(String),
}

/// Encodes a message as one protocol line, newline included.
pub fn encode<M: serde::Serialize>(msg: &M) -> String {
    #[derive(serde::Serialize)]
    struct Envelope<'a, M> {
        v: u32,
        #[serde(flatten)]
        msg: &'a M,
    }
    let json = serde_json::to_string(&Envelope {
        v: PROTOCOL_VERSION,
        msg,
    })
    .expect(
        "protocol messages always serialize: no maps with non-string keys, no non-finite floats",
    );
    format!("{PREFIX}{json}\n")
}

/// Decodes one line (without its newline) sent by an agent.
pub fn decode_agent_line(line: &[u8]) -> Result<Line<AgentMessage>, ProtocolError> {
    decode_line(line).and_then(|l| match l {
        Line::Message(m) => {
            messages::validate_agent(&m)?;
            Ok(Line::Message(m))
        }
        Line::Other(s) => Ok(Line::Other(s)),
    })
}

/// Decodes one line (without its newline) sent by the host.
pub fn decode_host_line(line: &[u8]) -> Result<Line<HostMessage>, ProtocolError> {
    decode_line(line).and_then(|l| match l {
        Line::Message(m) => {
            messages::validate_host(&m)?;
            Ok(Line::Message(m))
        }
        Line::Other(s) => Ok(Line::Other(s)),
    })
}

fn decode_line<M: serde::de::DeserializeOwned>(line: &[u8]) -> Result<Line<M>, ProtocolError> {
    if line.len() > MAX_LINE {
        return Err(ProtocolError::LineTooLong(line.len()));
    }
    let line = strip_cr(line);
    // A console may put anything before the prefix (a carriage return, a partial kernel
    // message); the prefix itself must start the message.
    let Some(start) = find(line, PREFIX.as_bytes()) else {
        return Ok(Line::Other(String::from_utf8_lossy(line).into_owned()));
    };
    let body =
        std::str::from_utf8(&line[start + PREFIX.len()..]).map_err(|_| ProtocolError::NotUtf8)?;
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    let v = value
        .get("v")
        .ok_or_else(|| ProtocolError::Malformed("missing protocol version `v`".into()))?;
    let v = v
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            ProtocolError::Malformed(format!("protocol version `v` is not a small integer: {v}"))
        })?;
    if v != PROTOCOL_VERSION {
        return Err(ProtocolError::Version { got: v });
    }
    let msg = serde_json::from_value(value).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    Ok(Line::Message(msg))
}

fn strip_cr(line: &[u8]) -> &[u8] {
    match line {
        [rest @ .., b'\r'] => rest,
        _ => line,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
