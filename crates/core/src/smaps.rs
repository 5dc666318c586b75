//! The host memory of a guest's processes, mapping by mapping (`/proc/PID/smaps`): which
//! mappings hold the guest's RAM, and what the VMM spends on itself.
//!
//! A guest's host processes hold two different things (issue 18): the guest RAM the host backs
//! (every page the guest touched once stays resident until something gives it back), and the
//! VMM's own memory (its heap, translation cache, device state, thread stacks, the private and
//! shared pages of its binary and libraries). The second is the cost seed 001 tabulates as
//! "VMM memory overhead"; the first belongs to the guest's configured memory.
//!
//! Guest memory is recognised by what the mapping is, never by size alone:
//! - QEMU's RAM blocks are anonymous private mappings QEMU marks `MADV_DONTFORK` (`dc` in
//!   `VmFlags`; a fork must not copy guest memory). The one whose size is the configured
//!   memory is the guest's RAM (`pc.ram`); the others are firmware and device RAM blocks (BIOS,
//!   option ROMs, ACPI tables), counted as the VMM's own.
//! - UML's physical memory is a file it creates with `O_TMPFILE`, mapped shared by the UML
//!   kernel process and by every process of the guest's user space: smaps names it
//!   `<dir>/#<inode> (deleted)`.
//! - gVisor's sentry keeps all application and kernel memory in one memfd, `runsc-memory`,
//!   which it and the address-space stub processes map shared.
//! - A guest that shares the host's kernel (namespace, native) has no guest RAM of its own:
//!   the processes running the agent are the guest, and their memory is the guest's.
//!
//! Everything else is the VMM's own, in parts named after what smaps can tell
//! ([`OwnPart`]); anonymous memory with no distinguishing mark is `unclassified`, never
//! guessed. All figures are PSS (shared pages divided among the processes mapping them), so
//! summing over a guest's processes counts a page shared between them once.

use std::collections::BTreeMap;

/// One mapping of `/proc/PID/smaps`, with the fields hvbench uses (KiB).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// `rwxp` / `rw-s`: read, write, execute, private or shared.
    pub perms: String,
    /// Offset in the file (bytes).
    pub offset: u64,
    /// `major:minor` of the file's device, hexadecimal as smaps prints it.
    pub dev: String,
    pub inode: u64,
    /// The path, `[heap]`, `[stack]`, `/memfd:NAME (deleted)`, or empty when anonymous.
    pub name: String,
    pub size_kib: u64,
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub swap_kib: u64,
    /// The two-letter `VmFlags` (`rd wr ex ... dc hg mg`).
    pub vm_flags: Vec<String>,
}

impl Mapping {
    fn perm(&self, i: usize, c: u8) -> bool {
        self.perms.as_bytes().get(i) == Some(&c)
    }
    pub fn writable(&self) -> bool {
        self.perm(1, b'w')
    }
    pub fn executable(&self) -> bool {
        self.perm(2, b'x')
    }
    pub fn shared(&self) -> bool {
        self.perm(3, b's')
    }
    /// No file behind it and no kernel-given name.
    pub fn anonymous(&self) -> bool {
        self.inode == 0 && self.name.is_empty()
    }
    pub fn has_flag(&self, flag: &str) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }
}

/// Parses the text of `/proc/PID/smaps`. Total: lines it does not understand are skipped, and
/// fields before the first mapping header are ignored.
pub fn parse(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        if let Some(m) = parse_header(line) {
            out.push(m);
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key == "VmFlags" {
            cur.vm_flags = value.split_whitespace().map(str::to_string).collect();
            continue;
        }
        let kib = || {
            value
                .trim()
                .strip_suffix("kB")
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let slot = match key {
            "Size" => &mut cur.size_kib,
            "Rss" => &mut cur.rss_kib,
            "Pss" => &mut cur.pss_kib,
            "Swap" => &mut cur.swap_kib,
            _ => continue,
        };
        if let Some(v) = kib() {
            *slot = v;
        }
    }
    out
}

/// `start-end perms offset dev inode [name]`; `None` for any other line.
fn parse_header(line: &str) -> Option<Mapping> {
    let mut rest = line;
    let mut field = || {
        let t = rest.trim_start();
        let end = t.find(char::is_whitespace).unwrap_or(t.len());
        let (f, r) = t.split_at(end);
        rest = r;
        (!f.is_empty()).then_some(f)
    };
    let range = field()?;
    let perms = field()?;
    let offset = field()?;
    let dev = field()?;
    let inode = field()?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let offset = u64::from_str_radix(offset, 16).ok()?;
    if perms.len() != 4 || !dev.contains(':') {
        return None;
    }
    Some(Mapping {
        start,
        end,
        perms: perms.to_string(),
        offset,
        dev: dev.to_string(),
        inode: inode.parse().ok()?,
        name: rest.trim().to_string(),
        ..Mapping::default()
    })
}

/// What held the guest's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GuestRamKind {
    QemuRamBlock,
    UmlMemoryFile,
    GvisorMemoryFile,
    /// The agent's own processes, on the host's kernel (namespace, native).
    GuestProcesses,
    /// The agent's binary mapped straight from the host file into the guest (gVisor maps
    /// host files into its application address spaces).
    AgentFile,
}

impl GuestRamKind {
    /// How it was recognised, for the result document.
    pub fn describe(self) -> &'static str {
        match self {
            GuestRamKind::QemuRamBlock => {
                "QEMU's RAM block: the anonymous mapping QEMU marks MADV_DONTFORK whose size is the \
                 configured memory"
            }
            GuestRamKind::UmlMemoryFile => {
                "UML's physical memory file: an O_TMPFILE file (#<inode> (deleted)) mapped shared \
                 by the UML kernel and its user processes"
            }
            GuestRamKind::GvisorMemoryFile => {
                "gVisor's memory file: the memfd runsc-memory, mapped shared by the sentry and its \
                 address-space stubs"
            }
            GuestRamKind::GuestProcesses => {
                "the processes running the agent (the guest shares the host's kernel: its memory \
                 is theirs)"
            }
            GuestRamKind::AgentFile => {
                "the agent's binary, mapped from the host file into the guest's address space"
            }
        }
    }
}

/// The parts of the VMM's own memory, as far as smaps can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OwnPart {
    /// Anonymous writable and executable: a JIT's code buffer (QEMU's TCG translation blocks).
    JitCode,
    /// `[heap]` and malloc's arenas (anonymous, `MAP_NORESERVE`: `nr`).
    Heap,
    /// `[stack]` and thread stacks (`MAP_STACK`, which the kernel marks no-huge-page: `nh`).
    Stacks,
    /// QEMU RAM blocks other than the guest's RAM: firmware, option ROMs, ACPI tables.
    FirmwareRam,
    /// Private or read-only file mappings: the VMM's binary, its libraries, data files.
    Files,
    /// Shared mappings that are not guest memory (other memfds, shared memory, shared files).
    SharedOther,
    /// `[vdso]`, `[vvar]` and other kernel-provided mappings.
    Kernel,
    /// Anonymous memory without a mark to tell what it is (large malloc blocks mapped
    /// directly, a Go runtime's heap, device buffers).
    Unclassified,
}

impl OwnPart {
    pub const ALL: [OwnPart; 8] = [
        OwnPart::JitCode,
        OwnPart::Heap,
        OwnPart::Stacks,
        OwnPart::FirmwareRam,
        OwnPart::Files,
        OwnPart::SharedOther,
        OwnPart::Kernel,
        OwnPart::Unclassified,
    ];

    /// The name in the result document.
    pub fn name(self) -> &'static str {
        match self {
            OwnPart::JitCode => "jit_code",
            OwnPart::Heap => "heap",
            OwnPart::Stacks => "stacks",
            OwnPart::FirmwareRam => "firmware_ram",
            OwnPart::Files => "files",
            OwnPart::SharedOther => "shared_other",
            OwnPart::Kernel => "kernel",
            OwnPart::Unclassified => "unclassified",
        }
    }
}

/// What one mapping is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    GuestRam(GuestRamKind),
    Own(OwnPart),
}

/// A file by device and inode, as smaps names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileId {
    /// `major:minor`, hexadecimal.
    pub dev: String,
    pub inode: u64,
}

impl FileId {
    /// The identity of the file at `path` (symbolic links followed).
    pub fn of(path: &std::path::Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let md = path.metadata().ok()?;
        let dev = md.dev();
        Some(FileId {
            dev: format!("{:02x}:{:02x}", libc::major(dev), libc::minor(dev)),
            inode: md.ino(),
        })
    }

    fn is(&self, m: &Mapping) -> bool {
        m.inode == self.inode && m.dev == self.dev
    }
}

/// Classifies a mapping of a VMM process; `guest_ram_kib` is the configured guest memory,
/// `agent` the agent's binary.
pub fn classify(m: &Mapping, guest_ram_kib: u64, agent: Option<&FileId>) -> Part {
    if let Some(kind) = guest_ram_kind(m, guest_ram_kib) {
        return Part::GuestRam(kind);
    }
    if agent.is_some_and(|a| a.is(m)) {
        return Part::GuestRam(GuestRamKind::AgentFile);
    }
    Part::Own(own_part(m))
}

fn guest_ram_kind(m: &Mapping, guest_ram_kib: u64) -> Option<GuestRamKind> {
    if m.shared() && m.name.starts_with("/memfd:runsc-memory") {
        return Some(GuestRamKind::GvisorMemoryFile);
    }
    if m.shared() && is_tmpfile(&m.name) {
        return Some(GuestRamKind::UmlMemoryFile);
    }
    if m.anonymous() && !m.shared() && m.has_flag("dc") && m.size_kib == guest_ram_kib {
        return Some(GuestRamKind::QemuRamBlock);
    }
    None
}

/// A file opened with `O_TMPFILE`: it never had a name, so smaps shows `<dir>/#<inode> (deleted)`.
fn is_tmpfile(name: &str) -> bool {
    name.strip_suffix(" (deleted)")
        .and_then(|p| p.rsplit('/').next())
        .and_then(|f| f.strip_prefix('#'))
        .is_some_and(|ino| !ino.is_empty() && ino.bytes().all(|b| b.is_ascii_digit()))
}

fn own_part(m: &Mapping) -> OwnPart {
    if m.name.starts_with('[') {
        return match m.name.as_str() {
            "[heap]" => OwnPart::Heap,
            n if n.starts_with("[stack") => OwnPart::Stacks,
            n if n.starts_with("[anon") => anonymous_part(m),
            _ => OwnPart::Kernel,
        };
    }
    if m.shared() {
        return OwnPart::SharedOther;
    }
    if !m.anonymous() {
        return OwnPart::Files;
    }
    anonymous_part(m)
}

fn anonymous_part(m: &Mapping) -> OwnPart {
    if m.writable() && m.executable() {
        OwnPart::JitCode
    } else if m.has_flag("dc") {
        OwnPart::FirmwareRam
    } else if m.has_flag("nr") {
        OwnPart::Heap
    } else if m.has_flag("nh") {
        OwnPart::Stacks
    } else {
        OwnPart::Unclassified
    }
}

/// The mappings of one host process of a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessMemory {
    pub pid: u32,
    /// `comm`: `qemu-system-x86`, `linux.uml`, `runsc-sandbox`, ...
    pub name: String,
    /// This process runs the agent itself (a guest on the host's kernel).
    pub runs_agent: bool,
    pub mappings: Vec<Mapping>,
}

/// Reads `/proc/PID/smaps` and `comm`; `runs_agent` when `/proc/PID/exe` is the file `agent`
/// (same device and inode, whatever the mount namespace calls it). `None` when unreadable.
pub fn read_process(pid: u32, agent: Option<&FileId>) -> Option<ProcessMemory> {
    let dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    let text = std::fs::read_to_string(dir.join("smaps")).ok()?;
    let name = std::fs::read_to_string(dir.join("comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default();
    let runs_agent = agent.is_some_and(|a| FileId::of(&dir.join("exe")).as_ref() == Some(a));
    Some(ProcessMemory {
        pid,
        name,
        runs_agent,
        mappings: parse(&text),
    })
}

/// One part's total over a guest's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartTotal {
    pub pss_kib: u64,
    /// Virtual size: what is reserved, against `pss_kib`, what is resident.
    pub size_kib: u64,
    pub mappings: u32,
}

/// One mapping among the largest of the VMM's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeMapping {
    pub pid: u32,
    pub process: String,
    pub part: OwnPart,
    pub mapping: Mapping,
}

/// A guest's host memory, split.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    /// PSS of the guest-memory mappings (or of the guest's own processes).
    pub guest_ram_pss_kib: u64,
    /// Their size: what of the guest memory is mapped, each byte once however many
    /// processes or mappings show it (UML maps its memory file in every process; gVisor's
    /// sentry reserves a window on its memory file larger than what the file holds).
    pub guest_ram_size_kib: u64,
    /// What held guest memory, each kind once.
    pub guest_ram_kinds: Vec<GuestRamKind>,
    /// PSS of everything else.
    pub own_pss_kib: u64,
    /// RSS of everything else: shared pages counted whole in every process, so that the figure
    /// does not depend on what else on the host maps the same files (PSS does).
    pub own_rss_kib: u64,
    pub parts: BTreeMap<OwnPart, PartTotal>,
    /// The largest of the VMM's own mappings by PSS, largest first.
    pub largest: Vec<LargeMapping>,
    /// Per process: pid, name, own PSS, guest PSS.
    pub processes: Vec<(u32, String, u64, u64)>,
}

/// Splits the memory of a guest's processes; keeps the `keep_largest` largest own mappings.
pub fn split(
    procs: &[ProcessMemory],
    guest_ram_kib: u64,
    agent: Option<&FileId>,
    keep_largest: usize,
) -> Split {
    let mut s = Split::default();
    let mut own_mappings: Vec<LargeMapping> = Vec::new();
    let mut guest_ranges: Ranges = BTreeMap::new();
    for p in procs {
        let (mut own, mut guest) = (0, 0);
        for m in &p.mappings {
            let part = if p.runs_agent {
                Part::GuestRam(GuestRamKind::GuestProcesses)
            } else {
                classify(m, guest_ram_kib, agent)
            };
            match part {
                Part::GuestRam(kind) => {
                    guest += m.pss_kib;
                    add_range(&mut guest_ranges, p.pid, m);
                    if !s.guest_ram_kinds.contains(&kind) {
                        s.guest_ram_kinds.push(kind);
                    }
                }
                Part::Own(part) => {
                    own += m.pss_kib;
                    s.own_rss_kib += m.rss_kib;
                    let t = s.parts.entry(part).or_default();
                    t.pss_kib += m.pss_kib;
                    t.size_kib += m.size_kib;
                    t.mappings += 1;
                    if m.pss_kib > 0 {
                        own_mappings.push(LargeMapping {
                            pid: p.pid,
                            process: p.name.clone(),
                            part,
                            mapping: m.clone(),
                        });
                    }
                }
            }
        }
        s.own_pss_kib += own;
        s.guest_ram_pss_kib += guest;
        s.processes.push((p.pid, p.name.clone(), own, guest));
    }
    s.guest_ram_size_kib = covered_kib(&guest_ranges);
    own_mappings.sort_by_key(|m| std::cmp::Reverse(m.mapping.pss_kib));
    own_mappings.truncate(keep_largest);
    s.largest = own_mappings;
    s.guest_ram_kinds.sort();
    s
}

/// Byte ranges per backing object: a file (device, inode) by file offset, or one process's
/// anonymous memory by address.
type Ranges = BTreeMap<(String, u64, u32), Vec<(u64, u64)>>;

fn add_range(r: &mut Ranges, pid: u32, m: &Mapping) {
    let len = m.end.saturating_sub(m.start);
    let (key, from) = if m.inode == 0 && !m.shared() {
        ((String::new(), 0, pid), m.start)
    } else {
        ((m.dev.clone(), m.inode, 0), m.offset)
    };
    r.entry(key)
        .or_default()
        .push((from, from.saturating_add(len)));
}

/// KiB covered by the union of the ranges.
fn covered_kib(r: &Ranges) -> u64 {
    let mut bytes = 0u64;
    for ranges in r.values() {
        let mut v = ranges.clone();
        v.sort_unstable();
        let mut cur: Option<(u64, u64)> = None;
        for (a, b) in v {
            match cur {
                Some((ca, cb)) if a <= cb => cur = Some((ca, cb.max(b))),
                Some((ca, cb)) => {
                    bytes += cb - ca;
                    cur = Some((a, b));
                }
                None => cur = Some((a, b)),
            }
        }
        if let Some((ca, cb)) = cur {
            bytes += cb - ca;
        }
    }
    bytes / 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU: &str = include_str!("../tests/fixtures/smaps/qemu-tcg.smaps");
    const UML_KERNEL: &str = include_str!("../tests/fixtures/smaps/uml-kernel.smaps");
    const UML_USERSPACE: &str = include_str!("../tests/fixtures/smaps/uml-userspace.smaps");
    const GVISOR_SENTRY: &str = include_str!("../tests/fixtures/smaps/gvisor-sentry.smaps");
    const GVISOR_STUB: &str = include_str!("../tests/fixtures/smaps/gvisor-stub.smaps");

    fn process(pid: u32, name: &str, text: &str) -> ProcessMemory {
        ProcessMemory {
            pid,
            name: name.into(),
            runs_agent: false,
            mappings: parse(text),
        }
    }

    #[test]
    fn headers_and_fields_are_parsed() {
        let text = "\
7fb81be00000-7fb82be00000 rw-p 00000000 00:00 0 
Size:             262144 kB
Rss:              112640 kB
Pss:              112640 kB
Swap:                  0 kB
THPeligible:           1
VmFlags: rd wr mr mw me dc ac hg mg 
5569c1855000-5569c1ece000 r-xp 00497000 fe:00 10199046                   /usr/bin/qemu system
Size:               6628 kB
Pss:                5908 kB
";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].end - m[0].start, 262144 * 1024);
        assert_eq!(
            (m[0].size_kib, m[0].rss_kib, m[0].pss_kib),
            (262144, 112640, 112640)
        );
        assert!(m[0].anonymous() && m[0].has_flag("dc") && !m[0].shared());
        assert_eq!(m[1].name, "/usr/bin/qemu system");
        assert_eq!(m[1].inode, 10199046);
        assert!(m[1].executable() && !m[1].writable());
    }

    #[test]
    fn garbage_is_skipped_never_a_panic() {
        for text in [
            "",
            "Pss: 12 kB\n",
            "zz-yy rw-p 0 0:0 0\nPss: 5 kB\n",
            "1-2 rw-p 0 00:00\n",
            "1-2 rw-p 0 00:00 0\nPss: lots kB\nSize: 18446744073709551616 kB\nVmFlags:\n",
        ] {
            let m = parse(text);
            assert!(
                m.iter().all(|m| m.pss_kib == 0 && m.size_kib == 0),
                "{text:?}"
            );
        }
    }

    #[test]
    fn tmpfile_names_are_recognised() {
        assert!(is_tmpfile("/dev/shm/#1234 (deleted)"));
        assert!(is_tmpfile("/tmp/hvbench-1/uml/#98 (deleted)"));
        assert!(!is_tmpfile("/dev/shm/#1234"));
        assert!(!is_tmpfile("/dev/shm/#abc (deleted)"));
        assert!(!is_tmpfile("/memfd:runsc-memory (deleted)"));
    }

    #[test]
    fn qemu_guest_ram_is_the_ram_block_of_the_configured_size() {
        let p = process(1, "qemu-system-x86", QEMU);
        let s = split(std::slice::from_ref(&p), 256 * 1024, None, 5);
        assert_eq!(s.guest_ram_kinds, vec![GuestRamKind::QemuRamBlock]);
        assert_eq!(s.guest_ram_size_kib, 256 * 1024);
        let ram = p
            .mappings
            .iter()
            .find(|m| m.size_kib == 256 * 1024 && m.has_flag("dc"))
            .unwrap();
        assert_eq!(s.guest_ram_pss_kib, ram.pss_kib);
        // Every mapping lands in exactly one side.
        let total: u64 = p.mappings.iter().map(|m| m.pss_kib).sum();
        assert_eq!(s.guest_ram_pss_kib + s.own_pss_kib, total);
        let parts: u64 = s.parts.values().map(|t| t.pss_kib).sum();
        assert_eq!(parts, s.own_pss_kib);
        assert!(s.own_rss_kib >= s.own_pss_kib);
        // The smaller RAM blocks (BIOS, ROMs, ACPI tables) are the VMM's, and TCG's code
        // buffer (anonymous rwx) is recognised as such.
        assert!(s.parts[&OwnPart::FirmwareRam].mappings >= 1);
        assert!(s.parts[&OwnPart::JitCode].size_kib >= 64 * 1024);
        assert!(s.parts.contains_key(&OwnPart::Heap) && s.parts.contains_key(&OwnPart::Files));
        assert!(s
            .largest
            .windows(2)
            .all(|w| w[0].mapping.pss_kib >= w[1].mapping.pss_kib));
        assert!(s.largest.len() <= 5);
    }

    #[test]
    fn qemu_without_a_block_of_the_configured_size_has_no_guest_ram() {
        // Told the wrong size, nothing is taken for guest RAM by size alone: all RAM blocks
        // are then firmware RAM, and the caller reports that guest RAM was not found.
        let s = split(&[process(1, "qemu", QEMU)], 512 * 1024, None, 5);
        assert!(s.guest_ram_kinds.is_empty());
        assert_eq!(s.guest_ram_pss_kib, 0);
    }

    #[test]
    fn uml_guest_ram_is_its_memory_file_in_every_process() {
        let kernel = process(1, "linux.uml", UML_KERNEL);
        let user = process(2, "uml-userspace", UML_USERSPACE);
        let s = split(&[kernel.clone(), user.clone()], 256 * 1024, None, 5);
        assert_eq!(s.guest_ram_kinds, vec![GuestRamKind::UmlMemoryFile]);
        let file_pss = |p: &ProcessMemory| -> u64 {
            p.mappings
                .iter()
                .filter(|m| m.shared() && m.name.ends_with("(deleted)") && m.name.contains("/#"))
                .map(|m| m.pss_kib)
                .sum()
        };
        assert_eq!(s.guest_ram_pss_kib, file_pss(&kernel) + file_pss(&user));
        assert!(s.processes.iter().all(|p| p.3 > 0), "{:?}", s.processes);
        // The file is mapped more than once (vmalloc areas, user processes): its size counts
        // each byte once, and it cannot exceed the configured memory.
        let mapped: u64 = kernel
            .mappings
            .iter()
            .chain(&user.mappings)
            .filter(|m| m.name.contains("/#"))
            .map(|m| m.size_kib)
            .sum();
        assert!(s.guest_ram_size_kib < mapped);
        assert!(s.guest_ram_size_kib <= 256 * 1024);
        // UML's kernel is its binary: the guest kernel's text is the VMM's own files.
        assert!(s.parts[&OwnPart::Files].pss_kib > 0);
        assert!(!s.parts.contains_key(&OwnPart::JitCode));
    }

    #[test]
    fn gvisor_guest_ram_is_the_runsc_memory_file_and_the_agent_binary() {
        let sentry = process(1, "exe", GVISOR_SENTRY);
        let stub = process(2, "exe", GVISOR_STUB);
        let agent = stub
            .mappings
            .iter()
            .find(|m| m.name.ends_with("/hvbench-agent"))
            .map(|m| FileId {
                dev: m.dev.clone(),
                inode: m.inode,
            })
            .expect("the stub maps the agent");
        let without = split(&[sentry.clone(), stub.clone()], 256 * 1024, None, 5);
        assert_eq!(
            without.guest_ram_kinds,
            vec![GuestRamKind::GvisorMemoryFile]
        );
        let with = split(&[sentry, stub], 256 * 1024, Some(&agent), 5);
        assert_eq!(
            with.guest_ram_kinds,
            vec![GuestRamKind::GvisorMemoryFile, GuestRamKind::AgentFile]
        );
        assert!(with.guest_ram_pss_kib > without.guest_ram_pss_kib);
        assert_eq!(
            with.guest_ram_pss_kib + with.own_pss_kib,
            without.guest_ram_pss_kib + without.own_pss_kib
        );
        // systrap's own memfd is the VMM's, not the guest's.
        assert!(with.parts[&OwnPart::SharedOther].mappings > 0);
    }

    #[test]
    fn a_process_running_the_agent_is_all_guest() {
        let mut p = process(7, "hvbench-agent", QEMU);
        p.runs_agent = true;
        let total: u64 = p.mappings.iter().map(|m| m.pss_kib).sum();
        let s = split(&[p, process(8, "unshare", UML_USERSPACE)], 0, None, 5);
        assert_eq!(s.guest_ram_pss_kib, total + s.processes[1].3);
        assert_eq!(s.processes[0], (7, "hvbench-agent".to_string(), 0, total));
        assert!(s.largest.iter().all(|l| l.pid == 8));
    }

    #[test]
    fn overlapping_ranges_count_once() {
        let mut r: Ranges = BTreeMap::new();
        let m = |start: u64, end: u64, offset: u64| Mapping {
            start,
            end,
            offset,
            perms: "rw-s".into(),
            dev: "00:1b".into(),
            inode: 21,
            ..Mapping::default()
        };
        add_range(&mut r, 1, &m(0x1000, 0x5000, 0));
        add_range(&mut r, 2, &m(0x9000, 0xb000, 0x3000));
        add_range(&mut r, 2, &m(0x9000, 0xa000, 0x8000));
        assert_eq!(covered_kib(&r), (0x5000 + 0x1000) / 1024);
    }
}
