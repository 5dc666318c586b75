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

mod elf;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use elf::{read_elf, ElfClock};

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
    /// A uprobe at each place where the applications' programs read the clock (the module's doc),
    /// and what the files that cannot be seen are; the reason when there are none.
    pub fn for_job(
        params: &hvbench_workloads::Params,
        tracefs: bool,
    ) -> Result<(Probes, Option<String>), String> {
        let tree = hvbench_workloads::app::tree_of(params).ok_or(
            "the job runs no program of the applications' root (uprobes are placed on its files)",
        )?;
        if !tracefs {
            return Err("no tracefs to define uprobes in (see syscalls)".into());
        }
        let sites = sites_once(&tree);
        if sites.sites.is_empty() {
            return Err(format!(
                "no clock function found in the ELF files of {}",
                tree.display()
            ));
        }
        let probes = Probes::define(&sites.sites)?;
        let unseen = (!sites.unseen.is_empty()).then(|| {
            let shown: Vec<&str> = sites.unseen.iter().take(4).map(String::as_str).collect();
            format!(
                "{} files call a clock function through their GOT, which no uprobe sees ({}{})",
                sites.unseen.len(),
                shown.join(", "),
                if sites.unseen.len() > 4 { ", ..." } else { "" }
            )
        });
        Ok((probes, unseen))
    }

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

/// The places of the applications' root where its programs read the clock, found once per
/// root and agent.
fn sites_once(tree: &Path) -> Arc<Sites> {
    static FOUND: Mutex<BTreeMap<PathBuf, Arc<Sites>>> = Mutex::new(BTreeMap::new());
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    found
        .entry(tree.to_path_buf())
        .or_insert_with(|| Arc::new(sites(tree)))
        .clone()
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
