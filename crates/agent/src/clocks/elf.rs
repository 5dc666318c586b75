//! What an x86-64 ELF file has of the clock functions: its definitions of them (dynamic
//! symbols), the GOT slots that import them (relocations) and the PLT entries that jump
//! through those slots. Read with `pread` from the section headers; no new crate.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::CLOCK_SYMBOLS;

/// What one ELF file has of the clock functions.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ElfClock {
    /// Definitions: symbol, file offset, whether an IFUNC.
    pub defs: Vec<(&'static str, u64, bool)>,
    /// PLT entries: symbol, file offset of the entry's indirect jump.
    pub stubs: Vec<(&'static str, u64)>,
    /// Imported through a GOT slot no PLT entry jumps through.
    pub got_only: Vec<&'static str>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn read_at(f: &File, offset: u64, len: u64) -> Option<Vec<u8>> {
    // A section larger than this is no symbol table of a program here.
    if len > 256 << 20 {
        return None;
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

/// The NUL-terminated name at `at` of a string table.
fn name_at(tab: &[u8], at: usize) -> Option<String> {
    let rest = tab.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// A section header's fields the reader uses.
#[derive(Debug, Clone, Default)]
struct Section {
    name: u32,
    kind: u32,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
    entsize: u64,
}

impl Section {
    fn read(&self, f: &File) -> Option<Vec<u8>> {
        read_at(f, self.offset, self.size)
    }
}

const SHT_RELA: u32 = 4;
const SHT_DYNSYM: u32 = 11;
const SHT_NOBITS: u32 = 8;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;
/// The size of an `Elf64_Sym` and of an `Elf64_Rela`.
const ENTRY: usize = 24;

/// The clock functions an x86-64 ELF file defines or imports, from its section headers,
/// dynamic symbols, relocations and PLT sections; `None` for anything else.
pub(super) fn read_elf(f: &File) -> Option<ElfClock> {
    let (sections, shstrndx) = section_headers(f)?;
    let (dynsym_at, dynsym) = sections
        .iter()
        .enumerate()
        .find(|(_, s)| s.kind == SHT_DYNSYM)?;
    let symbols = DynamicSymbols {
        syms: dynsym.read(f)?,
        strs: sections.get(dynsym.link as usize)?.read(f)?,
    };
    let mut out = ElfClock {
        defs: symbols.definitions(&sections)?,
        ..Default::default()
    };
    let slots = got_slots(f, &sections, dynsym_at, &symbols)?;
    if slots.is_empty() {
        return Some(out);
    }
    let names = sections.get(shstrndx)?.read(f)?;
    let mut reached = BTreeSet::new();
    for sec in &sections {
        let name = name_at(&names, sec.name as usize).unwrap_or_default();
        if matches!(name.as_str(), ".plt" | ".plt.sec" | ".plt.got") && sec.kind != SHT_NOBITS {
            for (slot, symbol, at) in plt_jumps(&sec.read(f)?, sec, &slots)? {
                reached.insert(slot);
                out.stubs.push((symbol, at));
            }
        }
    }
    for (at, symbol) in slots {
        if !reached.contains(&at) && !out.got_only.contains(&symbol) {
            out.got_only.push(symbol);
        }
    }
    Some(out)
}

/// The section headers of a little-endian 64-bit x86-64 ELF file, and the index of the section
/// that names them.
fn section_headers(f: &File) -> Option<(Vec<Section>, usize)> {
    let eh = read_at(f, 0, 64)?;
    if eh[..4] != *b"\x7fELF" || eh[4] != 2 || eh[5] != 1 || u16_at(&eh, 18)? != 62 {
        return None;
    }
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(&eh, 40)?,
        u16_at(&eh, 58)? as u64,
        u16_at(&eh, 60)? as u64,
        u16_at(&eh, 62)? as usize,
    );
    if shentsize < 64 || shnum == 0 {
        return None;
    }
    let raw = read_at(f, shoff, shentsize * shnum)?;
    let sections = (0..shnum as usize)
        .map(|i| {
            let b = &raw[i * shentsize as usize..];
            Some(Section {
                name: u32_at(b, 0)?,
                kind: u32_at(b, 4)?,
                addr: u64_at(b, 16)?,
                offset: u64_at(b, 24)?,
                size: u64_at(b, 32)?,
                link: u32_at(b, 40)?,
                entsize: u64_at(b, 56)?,
            })
        })
        .collect::<Option<_>>()?;
    Some((sections, shstrndx))
}

/// The dynamic symbol table and its strings.
struct DynamicSymbols {
    syms: Vec<u8>,
    strs: Vec<u8>,
}

impl DynamicSymbols {
    /// The clock function the symbol at `index` is, if any.
    fn clock_of(&self, index: usize) -> Option<&'static str> {
        let name = name_at(&self.strs, u32_at(&self.syms, index * ENTRY)? as usize)?;
        CLOCK_SYMBOLS.iter().copied().find(|s| *s == name)
    }

    /// The clock functions the file defines (a function or an IFUNC in one of its sections):
    /// symbol, file offset, whether an IFUNC.
    fn definitions(&self, sections: &[Section]) -> Option<Vec<(&'static str, u64, bool)>> {
        let mut defs = Vec::new();
        for i in 0..(self.syms.len() / ENTRY) {
            let Some(symbol) = self.clock_of(i) else {
                continue;
            };
            let b = &self.syms[i * ENTRY..];
            let (info, shndx, value) = (b[4], u16_at(b, 6)? as usize, u64_at(b, 8)?);
            let kind = info & 0xf;
            if shndx == 0 || !(kind == STT_FUNC || kind == STT_GNU_IFUNC) {
                continue;
            }
            let Some(sec) = sections.get(shndx) else {
                continue;
            };
            let offset = sec.offset + value.checked_sub(sec.addr)?;
            if !defs.iter().any(|&(s, o, _)| s == symbol && o == offset) {
                defs.push((symbol, offset, kind == STT_GNU_IFUNC));
            }
        }
        Some(defs)
    }
}

/// The GOT slots (by address) that the dynamic linker fills with a clock function's address:
/// the `JUMP_SLOT` and `GLOB_DAT` relocations against the dynamic symbols.
fn got_slots(
    f: &File,
    sections: &[Section],
    dynsym_at: usize,
    symbols: &DynamicSymbols,
) -> Option<BTreeMap<u64, &'static str>> {
    let mut slots = BTreeMap::new();
    for rel in sections
        .iter()
        .filter(|s| s.kind == SHT_RELA && s.link as usize == dynsym_at)
    {
        for e in rel.read(f)?.chunks_exact(ENTRY) {
            let (at, info) = (u64_at(e, 0)?, u64_at(e, 8)?);
            let kind = (info & 0xffff_ffff) as u32;
            if kind != R_X86_64_JUMP_SLOT && kind != R_X86_64_GLOB_DAT {
                continue;
            }
            if let Some(symbol) = symbols.clock_of((info >> 32) as usize) {
                slots.insert(at, symbol);
            }
        }
    }
    Some(slots)
}

/// The entries of the PLT section `sec` (its bytes `code`) that jump through one of `slots`:
/// the slot, its symbol and the file offset of the jump.
fn plt_jumps(
    code: &[u8],
    sec: &Section,
    slots: &BTreeMap<u64, &'static str>,
) -> Option<Vec<(u64, &'static str, u64)>> {
    let stride = match sec.entsize {
        8 | 16 => sec.entsize as usize,
        _ => 16,
    };
    let mut out = Vec::new();
    for start in (0..code.len()).step_by(stride) {
        let Some((insn, disp_at)) = indirect_jump(&code[start..]) else {
            continue;
        };
        let disp = i32::from_le_bytes(code[start + disp_at..start + disp_at + 4].try_into().ok()?);
        let next = sec.addr + (start + disp_at + 4) as u64;
        let target = next.wrapping_add_signed(disp as i64);
        if let Some(&symbol) = slots.get(&target) {
            out.push((target, symbol, sec.offset + (start + insn) as u64));
        }
    }
    Some(out)
}

/// A PLT entry's `jmp *disp32(%rip)`: where the instruction starts in `entry` and where its
/// displacement is. Entries start with it (`ff 25`, or `f2 ff 25` with MPX's `bnd`), or with
/// `endbr64` and then it (`.plt.sec` and `.plt.got` of a program built for IBT).
fn indirect_jump(entry: &[u8]) -> Option<(usize, usize)> {
    let after_endbr = if entry.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) {
        4
    } else {
        0
    };
    let rest = entry.get(after_endbr..)?;
    let found = if rest.starts_with(&[0xff, 0x25]) {
        Some((after_endbr, after_endbr + 2))
    } else if rest.starts_with(&[0xf2, 0xff, 0x25]) {
        Some((after_endbr, after_endbr + 3))
    } else {
        None
    };
    found.filter(|&(_, d)| entry.len() >= d + 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn plt_entries_of_each_layout_are_recognised() {
        let plain = [0xff, 0x25, 1, 2, 3, 4, 0x68, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0];
        assert_eq!(indirect_jump(&plain), Some((0, 2)));
        let bnd = [0xf2, 0xff, 0x25, 1, 2, 3, 4, 0x0f, 0x1f, 0x44, 0, 0];
        assert_eq!(indirect_jump(&bnd), Some((0, 3)));
        let ibt = [
            0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, 1, 2, 3, 4, 0x0f, 0x1f, 0x44, 0, 0,
        ];
        assert_eq!(indirect_jump(&ibt), Some((4, 7)));
        // PLT0 pushes first; the lazy half of an IBT .plt entry pushes and jumps directly.
        assert_eq!(indirect_jump(&[0xff, 0x35, 1, 2, 3, 4]), None);
        assert_eq!(
            indirect_jump(&[0xf3, 0x0f, 0x1e, 0xfa, 0x68, 0, 0, 0, 0]),
            None
        );
        assert_eq!(indirect_jump(&[0xff, 0x25, 1]), None);
    }

    #[test]
    fn a_plt_entry_is_matched_to_the_slot_its_jump_reads() {
        // Two 16-byte entries at 0x1000; the second jumps through the slot at 0x3000:
        // next instruction at 0x1010 + 6, displacement 0x3000 - 0x1016.
        let mut code = vec![0x90u8; 32];
        code[16..18].copy_from_slice(&[0xff, 0x25]);
        code[18..22].copy_from_slice(&(0x3000i32 - 0x1016).to_le_bytes());
        let sec = Section {
            addr: 0x1000,
            offset: 0x800,
            entsize: 16,
            ..Default::default()
        };
        let slots = BTreeMap::from([(0x3000u64, "time"), (0x3008, "gettimeofday")]);
        assert_eq!(
            plt_jumps(&code, &sec, &slots),
            Some(vec![(0x3000, "time", 0x810)])
        );
    }

    /// The C library this test runs with: its `clock_gettime` is found as a definition.
    #[test]
    fn the_host_c_library_defines_clock_gettime() {
        let candidates = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ];
        let Some(libc) = candidates.iter().find(|p| Path::new(p).exists()) else {
            eprintln!("skipped: no glibc at the usual paths");
            return;
        };
        let c = read_elf(&File::open(libc).unwrap()).expect("an x86-64 ELF file");
        assert!(
            c.defs
                .iter()
                .any(|&(s, _, ifunc)| s == "clock_gettime" && !ifunc),
            "{c:?}"
        );
    }
}
