//! A writer for the "new ASCII" (newc, magic `070701`) cpio format, the one the Linux
//! initramfs unpacker reads.
//!
//! Each entry is a 110-byte ASCII header (the magic and thirteen 8-digit hexadecimal fields),
//! the NUL-terminated name padded to a multiple of four bytes (counting the header), and the
//! data padded the same way. The archive ends with an entry named `TRAILER!!!`. Names carry no
//! leading `/`. Timestamps and owners are zero so that equal inputs give equal bytes.

use std::io::{self, Write};

/// The newc magic.
pub const MAGIC: &[u8; 6] = b"070701";
/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// Bytes in one header.
pub const HEADER_LEN: usize = 110;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Writes a newc archive entry by entry; [`CpioWriter::finish`] writes the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    offset: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> CpioWriter<W> {
        CpioWriter {
            out,
            next_ino: 1,
            offset: 0,
        }
    }

    /// A directory with the given permission bits (`0o755`).
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    /// A regular file with the given permission bits and contents.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A character device node (`dev/console` is 5:1).
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(TRAILER, 0, 0, 1, (0, 0), 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') || name == TRAILER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio entry name {name:?}"),
            ));
        }
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} is too large for newc"),
            )
        })?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(name, ino, mode, nlink, rdev, size)?;
        self.write_padded(data)
    }

    fn header(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        size: u32,
    ) -> io::Result<()> {
        let namesize = name.len() as u32 + 1;
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        let mut head = Vec::with_capacity(HEADER_LEN + name.len() + 4);
        head.extend_from_slice(MAGIC);
        for f in fields {
            head.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        debug_assert_eq!(head.len(), HEADER_LEN);
        head.extend_from_slice(name.as_bytes());
        head.push(0);
        self.write_padded(&head)
    }

    fn write_padded(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        let pad = pad4(self.offset);
        if pad > 0 {
            self.out.write_all(&[0u8; 3][..pad])?;
            self.offset += pad as u64;
        }
        Ok(())
    }
}

fn pad4(n: u64) -> usize {
    ((4 - (n % 4)) % 4) as usize
}

/// One entry read back from an archive (for tests and `hvbench` diagnostics).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub mode: u32,
    pub nlink: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

/// Parses a newc archive up to its trailer, checking magic, sizes and padding.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut off = 0usize;
    loop {
        if off & 3 != 0 {
            return Err(format!("entry at {off} is not 4-byte aligned"));
        }
        let head = bytes
            .get(off..off + HEADER_LEN)
            .ok_or_else(|| format!("truncated header at {off}"))?;
        if &head[..6] != MAGIC {
            return Err(format!("bad magic at {off}"));
        }
        let mut f = [0u32; 13];
        for (i, v) in f.iter_mut().enumerate() {
            let s = std::str::from_utf8(&head[6 + 8 * i..14 + 8 * i]).map_err(|e| e.to_string())?;
            *v = u32::from_str_radix(s, 16).map_err(|e| format!("bad field {i} at {off}: {e}"))?;
        }
        let (mode, nlink, size, rdev, namesize) =
            (f[1], f[4], f[6] as usize, (f[9], f[10]), f[11] as usize);
        let name_start = off + HEADER_LEN;
        let name_bytes = bytes
            .get(name_start..name_start + namesize)
            .ok_or("truncated name")?;
        if namesize == 0 || name_bytes[namesize - 1] != 0 {
            return Err(format!("name at {off} is not NUL-terminated"));
        }
        let name =
            String::from_utf8(name_bytes[..namesize - 1].to_vec()).map_err(|e| e.to_string())?;
        let data_start = name_start + namesize;
        let data_start = data_start + pad4(data_start as u64);
        if name == TRAILER {
            return Ok(entries);
        }
        let data = bytes
            .get(data_start..data_start + size)
            .ok_or_else(|| format!("truncated data of {name}"))?;
        let end = data_start + size;
        let padding_ok = bytes
            .get(end..end + pad4(end as u64))
            .is_some_and(|p| p.iter().all(|&b| b == 0));
        if !padding_ok {
            return Err(format!("bad padding after {name}"));
        }
        entries.push(Entry {
            name,
            mode,
            nlink,
            rdev,
            data: data.to_vec(),
        });
        off = end + pad4(end as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("dev", 0o755).unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.file("/init", 0o755, b"\x7fELF12345").unwrap();
        w.file("modules/01-a.ko", 0o644, b"").unwrap();
        w.file("x", 0o644, b"abc").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(&bytes[..6], MAGIC);
        let e = parse(&bytes).unwrap();
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["dev", "dev/console", "init", "modules/01-a.ko", "x"]
        );
        assert_eq!(e[0].mode, 0o040755);
        assert_eq!(e[1].mode, 0o020600);
        assert_eq!(e[1].rdev, (5, 1));
        assert_eq!(e[2].mode, 0o100755);
        assert_eq!(e[2].data, b"\x7fELF12345");
        assert_eq!(e[3].data, b"");
        assert_eq!(e[4].data, b"abc");
        // The trailer is the last header, followed by its padded name only.
        let tail = &bytes[bytes.len() - 124..];
        assert_eq!(&tail[..6], MAGIC);
        assert_eq!(&tail[HEADER_LEN..HEADER_LEN + 11], b"TRAILER!!!\0");
    }

    #[test]
    fn header_fields_are_exact() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("ab", 0o644, b"hello").unwrap();
        let bytes = w.finish().unwrap();
        let head = std::str::from_utf8(&bytes[..HEADER_LEN]).unwrap();
        // magic, ino 1, mode 100644, uid, gid, nlink 1, mtime, size 5, four device numbers,
        // namesize 3 ("ab" and its NUL), check.
        let fields = [1u32, 0o100644, 0, 0, 1, 0, 5, 0, 0, 0, 0, 3, 0];
        let expected: String = std::iter::once("070701".to_string())
            .chain(fields.iter().map(|f| format!("{f:08x}")))
            .collect();
        assert_eq!(head, expected);
        assert!(head.starts_with("07070100000001000081a4"));
        // The name ends at 113: three bytes of padding, then the data at 116.
        assert_eq!(&bytes[110..116], b"ab\0\0\0\0");
        assert_eq!(&bytes[116..121], b"hello");
        assert_eq!(&bytes[121..124], &[0, 0, 0]);
    }

    #[test]
    fn rejects_bad_names() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("", 0o644, b"").is_err());
        assert!(w.file("TRAILER!!!", 0o644, b"").is_err());
        assert!(w.file("a\0b", 0o644, b"").is_err());
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse(b"").is_err());
        assert!(parse(&[b'0'; 200]).is_err());
        let mut w = CpioWriter::new(Vec::new());
        w.file("x", 0o644, b"abc").unwrap();
        let bytes = w.finish().unwrap();
        assert!(parse(&bytes[..bytes.len() - 20]).is_err());
    }
}
