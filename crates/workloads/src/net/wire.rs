//! The wire format between the agent (which serves and measures) and the host peer.
//!
//! Each measured run is one TCP connection. The agent speaks first, with a 16-byte header, all
//! integers little-endian:
//!
//! ```text
//! offset 0  u32  magic  0x4E425648 (the bytes "HVBN")
//! offset 4  u32  op     1 = sink, 2 = source, 3 = echo, 4 = web load
//! offset 8  u64  count  bytes for sink and source, transactions for echo, sessions for web
//! ```
//!
//! - **sink** (`net.stream.tx`): the agent sends `count` bytes; the peer reads them all, then
//!   answers with an 8-byte ack, the u64 number of bytes it received. The agent stops its clock
//!   after the ack, so the interval covers delivery, not only filling socket buffers.
//! - **source** (`net.stream.rx`): the peer sends `count` bytes.
//! - **echo** (`net.rr`): `count` times, the agent sends one byte and the peer sends it back.
//! - **web load** (`app.web`): the agent sends a [`super::web_load::LoadSpec`] as a frame (a
//!   u32 length, then JSON); the peer drives `count` sessions against the guest's web server
//!   (not against the agent) and answers with a [`super::web_load::LoadResult`] frame. The
//!   load is generated, and its latencies measured, on the host, as a SPECweb client would.
//!
//! A sink or source with `count` = [`UNBOUNDED`] (u64::MAX) lasts until the agent closes the
//! connection: the isolation scenario's network stressors (`stress.net-send`,
//! `stress.net-recv`) stream for as long as their run lasts. The agent's close is then the
//! normal end of the operation, and the sink sends no ack.
//!
//! Then the agent closes the connection. The peer never sends anything before the header, so an
//! agent that finds a freshly accepted connection readable knows the peer already left.

/// The header's first four bytes, "HVBN" on the wire.
pub const MAGIC: u32 = 0x4E42_5648;
/// Bytes of a [`Header`] on the wire.
pub const HEADER_LEN: usize = 16;
/// Bytes of the sink's acknowledgement.
pub const ACK_LEN: usize = 8;
/// The `count` of a sink or source that lasts until the agent closes the connection.
pub const UNBOUNDED: u64 = u64::MAX;

/// What the agent asks the peer to do on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read `count` bytes, then acknowledge them.
    Sink = 1,
    /// Write `count` bytes.
    Source = 2,
    /// Echo `count` one-byte requests.
    Echo = 3,
    /// Drive `count` web sessions against the guest's web server and report.
    Web = 4,
}

/// The agent's request at the start of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub op: Op,
    pub count: u64,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&(self.op as u32).to_le_bytes());
        b[8..16].copy_from_slice(&self.count.to_le_bytes());
        b
    }

    /// Parses a header; the error says what is wrong with it.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, String> {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let magic = word(0);
        if magic != MAGIC {
            return Err(format!(
                "bad magic {magic:#010x} (expected {MAGIC:#010x}): not an hvbench agent"
            ));
        }
        let op = match word(4) {
            1 => Op::Sink,
            2 => Op::Source,
            3 => Op::Echo,
            4 => Op::Web,
            other => return Err(format!("unknown op {other}")),
        };
        let mut count = [0u8; 8];
        count.copy_from_slice(&b[8..16]);
        Ok(Header {
            op,
            count: u64::from_le_bytes(count),
        })
    }
}

/// Longest frame either side accepts: a load's spec or result is a few hundred bytes of JSON.
pub const MAX_FRAME: usize = 1 << 20;

/// Writes `payload` as a frame: its length as a little-endian u32, then the bytes.
pub fn write_frame(w: &mut impl std::io::Write, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::other(format!("a frame of {} bytes", payload.len())))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(payload)
}

/// Reads one frame written by [`write_frame`].
pub fn read_frame(r: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "a frame of {len} bytes (at most {MAX_FRAME})"
        )));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_starts_with_hvbn() {
        for (op, count) in [
            (Op::Sink, 0),
            (Op::Source, 1 << 40),
            (Op::Echo, u64::MAX),
            (Op::Web, 64),
        ] {
            let h = Header { op, count };
            let b = h.encode();
            assert_eq!(&b[0..4], b"HVBN");
            assert_eq!(Header::decode(&b), Ok(h));
        }
    }

    #[test]
    fn bad_magic_and_unknown_op_are_refused() {
        let mut b = Header {
            op: Op::Sink,
            count: 5,
        }
        .encode();
        b[4] = 9;
        assert!(Header::decode(&b).unwrap_err().contains("unknown op 9"));
        b[0] = b'X';
        assert!(Header::decode(&b).unwrap_err().contains("bad magic"));
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{\"a\":1}").unwrap();
        write_frame(&mut buf, b"").unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap(), b"{\"a\":1}");
        assert_eq!(read_frame(&mut r).unwrap(), b"");
        assert!(read_frame(&mut r).is_err());
        let huge = ((MAX_FRAME + 1) as u32).to_le_bytes();
        assert!(read_frame(&mut &huge[..]).is_err());
    }
}
