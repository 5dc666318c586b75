//! Where the applications' programs read the clock, for counting the reads with uprobes.
//!
//! Natively a program reads the clock without entering the kernel: glibc's `clock_gettime`
//! calls the vDSO, and its `gettimeofday` and `time` are IFUNCs that the dynamic linker resolves
//! straight to the vDSO's own functions. A guest without a vDSO (User-Mode Linux) traps on every
//! one of them, so they are events the model needs that `raw_syscalls:sys_enter` never sees.
//!
//! Each read is counted at a place it must pass, found in the ELF files of the applications'
//! root (their dynamic symbols and relocations, read here; no disassembler, no new crate):
//! - a clock function the C library defines as a plain function (`clock_gettime`): its entry,
//!   which every caller passes, the library's own included;
//! - one it defines as an IFUNC (`gettimeofday`, `time`), whose symbol is a resolver that runs
//!   once: the PLT entry of every program and library that imports it (an entry whose
//!   `jmp *GOT(%rip)` goes through the symbol's GOT slot).
//!
//! The places are uprobes defined in tracefs (`uprobe_events`, a group of this agent's own,
//! removed when the repetition's counters are closed) and counted as tracepoints: perf's
//! `uprobe` PMU takes the file's path as a pointer into the opener's memory, which the kernel
//! reads again whenever an inherited event is copied into a new child, in the memory of the
//! process that forks (a PostgreSQL backend's fork then fails with ENOENT).
//!
//! Not seen, and said so: a file that reaches a clock function through its GOT without a PLT
//! entry (built with `-fno-plt`; named by [`Sites::unseen`]), a program that calls the vDSO
//! itself or a static one (neither imports the symbol), the agent's own reads.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The clock functions counted.
pub const CLOCK_SYMBOLS: &[&str] = &["clock_gettime", "gettimeofday", "time"];

/// Directories of a root searched for ELF files, recursively.
const SEARCHED: &[&str] = &["usr/bin", "usr/sbin", "usr/lib", "usr/libexec", "usr/local"];

/// Files read at most (a root holds a few thousand).
const MAX_FILES: usize = 50_000;

/// One place to count: a file, an offset in it, the clock function whose calls pass there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub path: CString,
    pub offset: u64,
    pub symbol: &'static str,
}

/// Every place to count in a root, and the files whose reads cannot be seen.
#[derive(Debug, Default)]
pub struct Sites {
    pub sites: Vec<Site>,
    /// `file: symbol` for a file that imports a clock function without a PLT entry for it.
    pub unseen: Vec<String>,
}

/// What one ELF file has of the clock functions.
#[derive(Debug, Default, PartialEq)]
struct ElfClock {
    /// Definitions: symbol, file offset, whether an IFUNC.
    defs: Vec<(&'static str, u64, bool)>,
    /// PLT entries: symbol, file offset of the entry's indirect jump.
    stubs: Vec<(&'static str, u64)>,
    /// Imported through a GOT slot no PLT entry jumps through.
    got_only: Vec<&'static str>,
}

/// The places to count in the root file system at `root`.
pub fn sites(root: &Path) -> Sites {
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    for dir in SEARCHED {
        walk(&root.join(dir), &mut files, &mut seen);
    }
    let mut found: Vec<(PathBuf, ElfClock)> = Vec::new();
    for path in files {
        if let Some(c) = File::open(&path).ok().and_then(|f| read_elf(&f)) {
            if c != ElfClock::default() {
                found.push((path, c));
            }
        }
    }
    combine(found)
}

/// Whether `path` is a C library (`libc.so.6`), whose definitions of the clock functions are
/// the ones programs reach; other libraries that define them (the sanitizers' interceptors)
/// are reached only when preloaded.
fn is_c_library(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("libc.so"))
}

/// The sites from each file's findings: a symbol the C library defines as a plain function is
/// counted at its definition only (every call reaches it, through a PLT entry or not); any
/// other at the PLT entries that import it.
fn combine(found: Vec<(PathBuf, ElfClock)>) -> Sites {
    let plain: BTreeSet<&str> = found
        .iter()
        .filter(|(p, _)| is_c_library(p))
        .flat_map(|(_, c)| c.defs.iter())
        .filter(|(_, _, ifunc)| !ifunc)
        .map(|(s, _, _)| *s)
        .collect();
    let mut out = Sites::default();
    let mut placed = BTreeSet::new();
    for (path, c) in &found {
        // A uprobe's definition is a line with the path as one word.
        let bytes = path.as_os_str().as_bytes();
        if bytes.iter().any(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let Ok(cpath) = CString::new(bytes) else {
            continue;
        };
        let defs = c
            .defs
            .iter()
            .filter(|_| is_c_library(path))
            .filter(|(_, _, ifunc)| !ifunc)
            .map(|&(s, o, _)| (s, o));
        let stubs = c.stubs.iter().filter(|(s, _)| !plain.contains(s)).copied();
        for (symbol, offset) in defs.chain(stubs) {
            if placed.insert((cpath.clone(), offset)) {
                out.sites.push(Site {
                    path: cpath.clone(),
                    offset,
                    symbol,
                });
            }
        }
        for s in c.got_only.iter().filter(|s| !plain.contains(*s)) {
            out.unseen.push(format!("{}: {s}", path.display()));
        }
    }
    out
}

/// Uprobes defined in tracefs, one per site, in a group named after this agent's process;
/// removed when dropped.
#[derive(Debug)]
pub struct Probes {
    events_file: PathBuf,
    group: String,
    names: Vec<String>,
    /// The tracepoint id of each probe and the clock function it counts.
    pub events: Vec<(u64, &'static str)>,
}

impl Probes {
    /// Defines a probe at each of `sites` (tracefs mounted), or none.
    pub fn define(sites: &[Site]) -> Result<Probes, String> {
        let base = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .map(Path::new)
            .find(|b| b.join("uprobe_events").exists())
            .ok_or("no uprobe_events in tracefs (a kernel without uprobe events)")?;
        let events_file = base.join("uprobe_events");
        remove_stale(&events_file);
        let mut probes = Probes {
            group: format!("hvbench_{}", std::process::id()),
            events_file,
            names: Vec::new(),
            events: Vec::new(),
        };
        for (i, site) in sites.iter().enumerate() {
            let name = format!("clock{i}");
            let line = format!(
                "p:{}/{name} {}:{:#x}",
                probes.group,
                site.path.to_string_lossy(),
                site.offset
            );
            append(&probes.events_file, &line).map_err(|e| format!("{line}: {e}"))?;
            probes.names.push(name.clone());
            let id_file = base.join(format!("events/{}/{name}/id", probes.group));
            let id = std::fs::read_to_string(&id_file)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| format!("no id at {}", id_file.display()))?;
            probes.events.push((id, site.symbol));
        }
        Ok(probes)
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = append(&self.events_file, &format!("-:{}/{name}", self.group));
        }
    }
}

/// Appends one definition to `uprobe_events` (opened without truncation, which would remove
/// every probe of the system).
fn append(events_file: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(events_file)?;
    f.write_all(format!("{line}\n").as_bytes())
}

/// Removes the probes of agents that no longer run (one killed between defining and removing).
fn remove_stale(events_file: &Path) {
    let Ok(text) = std::fs::read_to_string(events_file) else {
        return;
    };
    for line in text.lines() {
        let Some(event) = line.split_whitespace().next().and_then(|d| d.get(2..)) else {
            continue;
        };
        let Some(pid) = event
            .strip_prefix("hvbench_")
            .and_then(|rest| rest.split('/').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = append(events_file, &format!("-:{event}"));
        }
    }
}

/// Regular files under `dir`, each inode once, symbolic links not followed.
fn walk(dir: &Path, files: &mut Vec<PathBuf>, seen: &mut BTreeSet<(u64, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if files.len() >= MAX_FILES {
            return;
        }
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        if m.is_dir() {
            walk(&e.path(), files, seen);
        } else if m.is_file() && m.len() >= 64 && seen.insert((m.dev(), m.ino())) {
            files.push(e.path());
        }
    }
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

const SHT_RELA: u32 = 4;
const SHT_DYNSYM: u32 = 11;
const SHT_NOBITS: u32 = 8;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;

/// The clock functions an x86-64 ELF file defines or imports, from its section headers,
/// dynamic symbols, relocations and PLT sections; `None` for anything else.
fn read_elf(f: &File) -> Option<ElfClock> {
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
    let sections: Vec<Section> = (0..shnum as usize)
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
    let (dynsym_at, dynsym) = sections
        .iter()
        .enumerate()
        .find(|(_, s)| s.kind == SHT_DYNSYM)?;
    let strtab = sections.get(dynsym.link as usize)?;
    let syms = read_at(f, dynsym.offset, dynsym.size)?;
    let strs = read_at(f, strtab.offset, strtab.size)?;
    let name_at = |tab: &[u8], at: usize| -> Option<String> {
        let rest = tab.get(at..)?;
        let end = rest.iter().position(|&c| c == 0)?;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    // The clock symbol a dynamic symbol index names, if any.
    let clock_of = |index: usize| -> Option<&'static str> {
        let name = name_at(&strs, u32_at(&syms, index * 24)? as usize)?;
        CLOCK_SYMBOLS.iter().copied().find(|s| *s == name)
    };
    let mut out = ElfClock::default();
    for i in 0..(syms.len() / 24) {
        let Some(symbol) = clock_of(i) else { continue };
        let b = &syms[i * 24..];
        let (info, shndx, value) = (b[4], u16_at(b, 6)? as usize, u64_at(b, 8)?);
        let kind = info & 0xf;
        if shndx == 0 || !(kind == STT_FUNC || kind == STT_GNU_IFUNC) {
            continue;
        }
        let Some(sec) = sections.get(shndx) else {
            continue;
        };
        let offset = sec.offset + value.checked_sub(sec.addr)?;
        if !out.defs.iter().any(|&(s, o, _)| s == symbol && o == offset) {
            out.defs.push((symbol, offset, kind == STT_GNU_IFUNC));
        }
    }
    // GOT slots that hold a clock function's address.
    let mut slots: BTreeMap<u64, &'static str> = BTreeMap::new();
    for rel in sections
        .iter()
        .filter(|s| s.kind == SHT_RELA && s.link as usize == dynsym_at)
    {
        let r = read_at(f, rel.offset, rel.size)?;
        for e in r.chunks_exact(24) {
            let (at, info) = (u64_at(e, 0)?, u64_at(e, 8)?);
            let kind = (info & 0xffff_ffff) as u32;
            if kind != R_X86_64_JUMP_SLOT && kind != R_X86_64_GLOB_DAT {
                continue;
            }
            if let Some(symbol) = clock_of((info >> 32) as usize) {
                slots.insert(at, symbol);
            }
        }
    }
    if slots.is_empty() {
        return Some(out);
    }
    let names = read_at(
        f,
        sections.get(shstrndx)?.offset,
        sections.get(shstrndx)?.size,
    )?;
    let mut reached = BTreeSet::new();
    for sec in &sections {
        let name = name_at(&names, sec.name as usize).unwrap_or_default();
        if !matches!(name.as_str(), ".plt" | ".plt.sec" | ".plt.got") || sec.kind == SHT_NOBITS {
            continue;
        }
        let code = read_at(f, sec.offset, sec.size)?;
        let stride = match sec.entsize {
            8 | 16 => sec.entsize as usize,
            _ => 16,
        };
        for start in (0..code.len()).step_by(stride) {
            let Some((insn, disp_at)) = indirect_jump(&code[start..]) else {
                continue;
            };
            let disp =
                i32::from_le_bytes(code[start + disp_at..start + disp_at + 4].try_into().ok()?);
            let next = sec.addr + (start + disp_at + 4) as u64;
            let target = next.wrapping_add_signed(disp as i64);
            if let Some(&symbol) = slots.get(&target) {
                reached.insert(target);
                out.stubs.push((symbol, sec.offset + (start + insn) as u64));
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
    fn a_function_the_c_library_defines_plainly_is_counted_at_its_definition_only() {
        let libc = ElfClock {
            defs: vec![
                ("clock_gettime", 0x100, false),
                ("gettimeofday", 0x200, true),
            ],
            ..Default::default()
        };
        let program = ElfClock {
            stubs: vec![("clock_gettime", 0x10), ("gettimeofday", 0x20)],
            got_only: vec!["time"],
            ..Default::default()
        };
        // A sanitizer's interceptors define them too; programs do not reach them.
        let tsan = ElfClock {
            defs: vec![
                ("clock_gettime", 0x300, false),
                ("gettimeofday", 0x400, false),
            ],
            ..Default::default()
        };
        let s = combine(vec![
            (PathBuf::from("/r/libc.so.6"), libc),
            (PathBuf::from("/r/libtsan.so.2"), tsan),
            (PathBuf::from("/r/prog"), program),
        ]);
        let got: Vec<(String, u64, &str)> = s
            .sites
            .iter()
            .map(|s| (s.path.to_string_lossy().into_owned(), s.offset, s.symbol))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/r/libc.so.6".to_string(), 0x100, "clock_gettime"),
                ("/r/prog".to_string(), 0x20, "gettimeofday"),
            ]
        );
        assert_eq!(s.unseen, vec!["/r/prog: time".to_string()]);
    }

    /// The C library this test runs with: its `clock_gettime` is found as a definition, and a
    /// dynamically linked program of the host (if any) imports a clock function through a PLT
    /// entry or is named as unseen.
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
