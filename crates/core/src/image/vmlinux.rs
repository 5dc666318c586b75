//! The kernel as an uncompressed ELF with a PVH entry point, for faster emulated boots.
//!
//! A bzImage starts in real mode, goes through the firmware's boot protocol, then decompresses
//! its payload (the `vmlinux` ELF) inside the guest. Under TCG that costs about 0.4 s of every
//! boot (measured here with the Debian cloud kernel). Kernels built with `CONFIG_PVH` carry an
//! ELF note (`XEN_ELFNOTE_PHYS32_ENTRY`) that lets QEMU load the ELF itself and enter it in
//! 32-bit protected mode. This module takes the payload out of the bzImage once, on the host,
//! and caches it; when anything does not fit (an unsupported compression, no PVH note), the
//! caller boots the bzImage as usual.
//!
//! The payload location comes from the setup header (boot protocol 2.08+): `setup_sects` at
//! 0x1F1, `payload_offset` at 0x248 and `payload_length` at 0x24C, relative to the protected-mode
//! code that starts after the setup sectors. The kernel build appends the uncompressed size
//! (u32, little-endian) to the compressed payload.

use std::path::{Path, PathBuf};

use super::{guest_executable, KernelImage};

/// Why no PVH kernel could be made (the caller falls back to the bzImage).
#[derive(Debug, thiserror::Error)]
pub enum VmlinuxError {
    #[error("not a bzImage of boot protocol 2.08 or later")]
    NotBzImage,
    #[error("payload compressed with {0}, which hvbench does not unpack (lz4 and zstd are)")]
    Unsupported(&'static str),
    #[error("the payload is corrupt: {0}")]
    Corrupt(String),
    #[error("the kernel has no PVH entry note (CONFIG_PVH is off)")]
    NoPvhNote,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4C, 0x18];
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Bumped when the extraction changes, so that cached files are made again.
const EXTRACT_VERSION: u32 = 1;

/// Returns the cached PVH ELF of `kernel`, extracting it first if needed.
///
/// The cache key is the kernel's path, size, modification time and version: this is derived
/// data of a file in /boot, cheap to remake, and hashing 14 MB on every run would cost more than
/// it protects.
pub fn pvh_kernel(kernel: &KernelImage, cache: &Path) -> Result<PathBuf, VmlinuxError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&kernel.path)?;
    let key = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(EXTRACT_VERSION.to_le_bytes());
        h.update(kernel.path.as_os_str().as_encoded_bytes());
        h.update(meta.len().to_le_bytes());
        h.update(meta.mtime().to_le_bytes());
        h.update(meta.mtime_nsec().to_le_bytes());
        h.update(meta.ino().to_le_bytes());
        format!("{:x}", h.finalize())
    };
    let path = cache.join(format!("vmlinux-{}-{}.elf", kernel.version, &key[..16]));
    if is_pvh_elf_file(&path) {
        return Ok(path);
    }
    let bz = std::fs::read(&kernel.path)?;
    let elf = extract(&bz)?;
    let elf = guest_executable(&elf);
    super::write_atomically(&path, &elf).map_err(|e| match e {
        super::ImageError::Io { source, .. } => VmlinuxError::Io(source),
        other => VmlinuxError::Corrupt(other.to_string()),
    })?;
    super::prune(cache, "vmlinux-", ".elf", 2, &path);
    Ok(path)
}

fn is_pvh_elf_file(path: &Path) -> bool {
    // Reading ~50 MB to check a note would defeat the cache: the file was checked when it was
    // written atomically, so its existence and ELF magic suffice.
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"\x7fELF"
}

/// The uncompressed ELF inside a bzImage, checked for a PVH entry note.
pub fn extract(bz: &[u8]) -> Result<Vec<u8>, VmlinuxError> {
    let payload = payload(bz)?;
    let elf = decompress(payload)?;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err(VmlinuxError::Corrupt(
            "the payload is not an ELF file".into(),
        ));
    }
    if !has_pvh_note(&elf) {
        return Err(VmlinuxError::NoPvhNote);
    }
    Ok(elf)
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// The compressed payload of a bzImage.
fn payload(bz: &[u8]) -> Result<&[u8], VmlinuxError> {
    if bz.get(0x202..0x206) != Some(b"HdrS") {
        return Err(VmlinuxError::NotBzImage);
    }
    let version = u16::from_le_bytes([bz[0x206], bz[0x207]]);
    if version < 0x0208 {
        return Err(VmlinuxError::NotBzImage);
    }
    let setup_sects = match bz[0x1F1] {
        0 => 4,
        n => n as usize,
    };
    let start = (setup_sects + 1) * 512;
    let off = u32_at(bz, 0x248).ok_or(VmlinuxError::NotBzImage)? as usize;
    let len = u32_at(bz, 0x24C).ok_or(VmlinuxError::NotBzImage)? as usize;
    bz.get(start + off..start + off + len)
        .ok_or_else(|| VmlinuxError::Corrupt("payload outside the file".into()))
}

fn decompress(p: &[u8]) -> Result<Vec<u8>, VmlinuxError> {
    let corrupt = |e: String| VmlinuxError::Corrupt(e);
    if p.len() < 8 {
        return Err(corrupt("payload too short".into()));
    }
    // The build appends the uncompressed size.
    let size = u32_at(p, p.len() - 4).unwrap_or(0) as usize;
    let body = &p[..p.len() - 4];
    let out = match [p[0], p[1], p[2], p[3]] {
        LZ4_LEGACY_MAGIC => lz4_legacy(&body[4..], size)?,
        ZSTD_MAGIC => {
            use std::io::Read;
            let mut out = Vec::with_capacity(size);
            let mut dec = ruzstd::decoding::StreamingDecoder::new(body)
                .map_err(|e| corrupt(format!("zstd: {e}")))?;
            dec.read_to_end(&mut out)
                .map_err(|e| corrupt(format!("zstd: {e}")))?;
            out
        }
        [0x1F, 0x8B, ..] => return Err(VmlinuxError::Unsupported("gzip")),
        [0xFD, b'7', b'z', b'X'] => return Err(VmlinuxError::Unsupported("xz")),
        [b'B', b'Z', b'h', _] => return Err(VmlinuxError::Unsupported("bzip2")),
        [0x5D, 0x00, 0x00, _] => return Err(VmlinuxError::Unsupported("lzma")),
        [0x89, b'L', b'Z', b'O'] => return Err(VmlinuxError::Unsupported("lzo")),
        _ => return Err(VmlinuxError::Unsupported("an unknown method")),
    };
    if out.len() != size {
        return Err(corrupt(format!(
            "{} bytes unpacked, the header says {size}",
            out.len()
        )));
    }
    Ok(out)
}

/// The LZ4 "legacy" format the kernel build uses (`lz4 -l`): after the magic, blocks of
/// `u32 compressed length` + data, each unpacking to at most 8 MiB on its own.
fn lz4_legacy(mut data: &[u8], size: usize) -> Result<Vec<u8>, VmlinuxError> {
    let mut out = vec![0u8; size];
    let mut pos = 0;
    while data.len() >= 4 {
        let n = u32_at(data, 0).unwrap_or(0) as usize;
        if n.to_le_bytes()[..4] == LZ4_LEGACY_MAGIC {
            // Another frame follows (concatenated archives): just a new header.
            data = &data[4..];
            continue;
        }
        let block = data
            .get(4..4 + n)
            .ok_or_else(|| VmlinuxError::Corrupt("lz4 block past the end".into()))?;
        let end = (pos + LZ4_LEGACY_BLOCK).min(out.len());
        let written = lz4_flex::block::decompress_into(block, &mut out[pos..end])
            .map_err(|e| VmlinuxError::Corrupt(format!("lz4: {e}")))?;
        pos += written;
        data = &data[4 + n..];
    }
    out.truncate(pos);
    Ok(out)
}

/// Whether an ELF64 file has a PT_NOTE with the Xen PVH entry point.
pub fn has_pvh_note(elf: &[u8]) -> bool {
    let (Some(phoff), Some(sizes)) = (u64_at(elf, 0x20), elf.get(0x36..0x3A)) else {
        return false;
    };
    let phentsize = u16::from_le_bytes([sizes[0], sizes[1]]) as usize;
    let phnum = u16::from_le_bytes([sizes[2], sizes[3]]) as usize;
    (0..phnum).any(|i| {
        let ph = phoff as usize + i * phentsize;
        if u32_at(elf, ph) != Some(4) {
            return false; // not PT_NOTE
        }
        let (Some(off), Some(len)) = (u64_at(elf, ph + 8), u64_at(elf, ph + 32)) else {
            return false;
        };
        let Some(notes) = elf.get(off as usize..(off + len) as usize) else {
            return false;
        };
        notes_have(notes, b"Xen", XEN_ELFNOTE_PHYS32_ENTRY)
    })
}

fn notes_have(mut notes: &[u8], name: &[u8], kind: u32) -> bool {
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let namesz = u32_at(notes, 0).unwrap_or(0) as usize;
        let descsz = u32_at(notes, 4).unwrap_or(0) as usize;
        let ty = u32_at(notes, 8).unwrap_or(0);
        let n = notes.get(12..12 + namesz).unwrap_or_default();
        if ty == kind && n.strip_suffix(b"\0").unwrap_or(n) == name {
            return true;
        }
        let next = 12 + align4(namesz) + align4(descsz);
        if next > notes.len() {
            return false;
        }
        notes = &notes[next..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with one PT_NOTE holding the given notes.
    fn elf_with_note(kind: u32) -> Vec<u8> {
        let mut e = vec![0u8; 0x200];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3A].copy_from_slice(&1u16.to_le_bytes());
        e[64..68].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
        e[64 + 8..64 + 16].copy_from_slice(&0x100u64.to_le_bytes()); // p_offset
        e[64 + 32..64 + 40].copy_from_slice(&24u64.to_le_bytes()); // p_filesz
        let note = [4u32.to_le_bytes(), 8u32.to_le_bytes(), kind.to_le_bytes()].concat();
        e[0x100..0x10C].copy_from_slice(&note);
        e[0x10C..0x110].copy_from_slice(b"Xen\0");
        e
    }

    /// A bzImage shell around a payload.
    fn bz_with(payload: &[u8]) -> Vec<u8> {
        let mut bz = vec![0u8; 5 * 512];
        bz[0x1F1] = 4;
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
        bz[0x248..0x24C].copy_from_slice(&16u32.to_le_bytes());
        bz[0x24C..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        bz.extend_from_slice(&[0u8; 16]);
        bz.extend_from_slice(payload);
        bz
    }

    fn lz4_legacy_payload(data: &[u8]) -> Vec<u8> {
        let mut p = LZ4_LEGACY_MAGIC.to_vec();
        for chunk in data.chunks(LZ4_LEGACY_BLOCK) {
            let c = lz4_flex::block::compress(chunk);
            p.extend_from_slice(&(c.len() as u32).to_le_bytes());
            p.extend_from_slice(&c);
        }
        p.extend_from_slice(&(data.len() as u32).to_le_bytes());
        p
    }

    #[test]
    fn extracts_lz4_and_zstd_payloads() {
        let elf = elf_with_note(XEN_ELFNOTE_PHYS32_ENTRY);
        assert!(has_pvh_note(&elf));
        assert_eq!(extract(&bz_with(&lz4_legacy_payload(&elf))).unwrap(), elf);
        let mut z = ruzstd::encoding::compress_to_vec(
            &elf[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        z.extend_from_slice(&(elf.len() as u32).to_le_bytes());
        assert_eq!(extract(&bz_with(&z)).unwrap(), elf);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        let no_pvh = elf_with_note(5);
        assert!(!has_pvh_note(&no_pvh));
        assert!(matches!(
            extract(&bz_with(&lz4_legacy_payload(&no_pvh))),
            Err(VmlinuxError::NoPvhNote)
        ));
        let gz = [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            extract(&bz_with(&gz)),
            Err(VmlinuxError::Unsupported("gzip"))
        ));
        assert!(matches!(
            extract(&[0u8; 4096]),
            Err(VmlinuxError::NotBzImage)
        ));
        let mut bad = lz4_legacy_payload(&no_pvh);
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            extract(&bz_with(&bad)),
            Err(VmlinuxError::Corrupt(_))
        ));
    }

    #[test]
    fn real_kernel_has_a_pvh_entry() {
        let Ok(k) = KernelImage::find(None) else {
            return;
        };
        let bz = std::fs::read(&k.path).unwrap();
        match extract(&bz) {
            Ok(elf) => assert!(has_pvh_note(&elf)),
            // Fine for kernels compressed otherwise; they boot as bzImage.
            Err(VmlinuxError::Unsupported(_)) | Err(VmlinuxError::NoPvhNote) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
