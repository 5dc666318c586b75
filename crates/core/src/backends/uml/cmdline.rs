//! The UML command line: the configuration it is built from ([`UmlConfig`]), the argument
//! vector (the kernel command line, with the names of the guest's disks and NIC), and the
//! settings recorded with it in the result.

use std::path::PathBuf;

use super::{lpj_for, UmlKernel, AGENT_FD, AGENT_TTY, INITRD_NAME, RAID6_BENCHMARK};
use crate::backends::GuestSpec;
use crate::image::Initramfs;
use crate::netns;

/// The longest `umid` UML takes (`UMID_LEN` is 64, with the NUL).
const MAX_UMID: usize = 63;

/// Everything the UML command line depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct UmlConfig {
    pub binary: PathBuf,
    /// The machine's name; its directory `<uml_dir>/<umid>` holds the pid file and the
    /// management console socket.
    pub umid: String,
    pub memory_mib: u32,
    /// Loops per jiffy for the delay loop; `None` lets the kernel calibrate it (about 0.1 s).
    pub lpj: Option<u64>,
    /// Initcalls the kernel skips (`initcall_blacklist=`).
    pub skip_initcalls: Vec<String>,
    /// Legacy BSD pseudo-terminals (`pty.legacy_count=`); `None` keeps the build's 256.
    pub legacy_ptys: Option<u32>,
    /// Kernel messages up to `loglevel` 4 only (`quiet`).
    pub quiet: bool,
    /// Appended to the command line as they are (experiments and tests).
    pub extra_args: Vec<String>,
    /// A disk as `ubd0` (the symlink [`DISK_NAME`] in the work directory), read-only or not.
    pub disk: Option<bool>,
    /// The applications' disks: the root file system's ext4 image read-only as `ubd1`
    /// ([`ROOTFS_NAME`]) and their own ext4 disk as `ubd2` ([`APP_DISK_NAME`]).
    pub app_disks: bool,
    /// A vector NIC on the tap device of a namespace hvbench created.
    pub net: bool,
    /// Runs UML inside a network namespace (`nsenter --net=... --`).
    pub prefix: Vec<String>,
}

/// The disk image's name in the guest's work directory (a symlink to the real file: UML splits
/// its command line at spaces, so no path the user chose goes on it).
pub const DISK_NAME: &str = "disk.img";
/// The disk as the UML guest sees it.
pub const GUEST_DISK: &str = "/dev/ubda";
/// Links in the work directory to the root file system's image and the applications' disk.
pub const ROOTFS_NAME: &str = "rootfs.ext4";
pub const APP_DISK_NAME: &str = "app.ext4";
/// Both as the guest sees them.
pub const GUEST_ROOTFS_DISK: &str = "/dev/ubdb";
pub const GUEST_APP_DISK: &str = "/dev/ubdc";
/// UML names its first vector interface `vec0`.
pub const GUEST_NIC: &str = "vec0";

impl UmlConfig {
    /// The standard configuration for `spec` on `kernel`.
    pub fn new(kernel: &UmlKernel, spec: &GuestSpec) -> UmlConfig {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        UmlConfig {
            binary: kernel.binary.clone(),
            umid: umid_for(&spec.label),
            memory_mib: spec.memory_mib.max(64),
            lpj: lpj_for(&cpuinfo, kernel.hz),
            skip_initcalls: RAID6_BENCHMARK.map(String::from).to_vec(),
            legacy_ptys: Some(0),
            quiet: true,
            extra_args: Vec::new(),
            disk: None,
            app_disks: false,
            net: false,
            prefix: Vec::new(),
        }
    }
}

/// A `umid` from a guest label: letters, digits, `.`, `_` and `-` kept, others `_`, at most
/// [`MAX_UMID`] bytes (UML names a directory after it, and the kernel command line is split at
/// spaces).
pub fn umid_for(label: &str) -> String {
    let mut u: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_UMID)
        .collect();
    if u.is_empty() || u.starts_with('.') {
        u.insert(0, 'g');
        u.truncate(MAX_UMID);
    }
    u
}

/// The `linux.uml` command line, one argument per element; the first is the binary. Paths are
/// relative to the guest's work directory, where UML runs.
pub fn command_line(cfg: &UmlConfig) -> Vec<String> {
    let mut v = vec![
        cfg.binary.display().to_string(),
        format!("mem={}M", cfg.memory_mib),
        format!("initrd={INITRD_NAME}"),
        format!("umid={}", cfg.umid),
        "uml_dir=.".to_string(),
        // No line but those named below: Debian's defaults would start an xterm for each
        // console and open host ptys for the serial lines.
        "con=none".to_string(),
        "ssl=none".to_string(),
        // The kernel console (and the agent's stdout and stderr): no input, output to UML's
        // stdout, the console log.
        "con0=null,fd:1".to_string(),
        // The agent's line, on the inherited socketpair end.
        format!("con1=fd:{AGENT_FD}"),
    ];
    if cfg.quiet {
        v.push("quiet".into());
    }
    if let Some(lpj) = cfg.lpj {
        v.push(format!("lpj={lpj}"));
    }
    if let Some(n) = cfg.legacy_ptys {
        v.push(format!("pty.legacy_count={n}"));
    }
    if !cfg.skip_initcalls.is_empty() {
        v.push(format!(
            "initcall_blacklist={}",
            cfg.skip_initcalls.join(",")
        ));
    }
    if let Some(read_only) = cfg.disk {
        // No `s` flag: UML's ubd driver writes through the host's page cache (it has no
        // O_DIRECT mode), which the result records.
        let flags = if read_only { "r" } else { "" };
        v.push(format!("ubd0{flags}={DISK_NAME}"));
        v.push(format!("hvbench_disk={GUEST_DISK}"));
    }
    if cfg.app_disks {
        // `c`: shared between guests (every guest of the run reads the same image), no lock.
        v.push(format!("ubd1rc={ROOTFS_NAME}"));
        v.push(format!("ubd2={APP_DISK_NAME}"));
    }
    if cfg.net {
        // gro=1: the tap carries offload headers, so the host hands UML whole TCP segments.
        // Without it host-to-guest streams stalled here (0.28 Mbit/s, retransmission-bound,
        // against 6.6 Gbit/s with it: `hvbench run --workload net.stream.rx --backend uml`).
        v.push(format!(
            "{GUEST_NIC}:transport=tap,ifname={},gro=1",
            netns::TAP_NAME
        ));
        v.push(format!(
            "hvbench_ip={GUEST_NIC}:{}/{}",
            netns::GUEST_ADDR,
            netns::PREFIX
        ));
    }
    v.push("hvbench_init=1".into());
    v.push(format!("hvbench_channel={AGENT_TTY}"));
    v.extend(cfg.extra_args.iter().cloned());
    if cfg.prefix.is_empty() {
        v
    } else {
        cfg.prefix.iter().cloned().chain(v).collect()
    }
}

/// The settings that shape a UML guest's numbers, for the result document.
pub(super) fn recorded_settings(
    cfg: &UmlConfig,
    kernel: &UmlKernel,
    image: &Initramfs,
    spec: &GuestSpec,
    memory_why: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut s = vec![
        (
            "channel",
            format!(
                "console line {AGENT_TTY} (con1=fd:{AGENT_FD}) on a socketpair; kernel console \
                 to console.log"
            ),
        ),
        ("cwd", spec.workdir.display().to_string()),
        (
            "initramfs",
            format!("{} ({} bytes)", image.path.display(), image.size),
        ),
        (
            "modules",
            "none (UML has what the agent uses built in)".to_string(),
        ),
        ("memory_file", format!("O_TMPFILE in {memory_why}")),
        (
            "lpj",
            match cfg.lpj {
                Some(l) => format!(
                    "{l} (from the host's BogoMIPS at HZ {}; not calibrated at boot)",
                    kernel.hz.map_or("?".into(), |h| h.to_string())
                ),
                None => "calibrated at boot".into(),
            },
        ),
        (
            "skipped_initcalls",
            if cfg.skip_initcalls.is_empty() {
                "none".into()
            } else {
                cfg.skip_initcalls.join(",")
            },
        ),
        (
            "legacy_ptys",
            cfg.legacy_ptys
                .map_or("as built (256)".into(), |n| n.to_string()),
        ),
    ];
    if spec.vcpus > 1 {
        s.push((
            "vcpus_requested",
            format!(
                "{} (UML {} is uniprocessor, CONFIG_NR_CPUS={}: the guest runs 1)",
                spec.vcpus, kernel.release, kernel.nr_cpus
            ),
        ));
    }
    s.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentBinary;

    fn kernel() -> UmlKernel {
        UmlKernel {
            binary: PathBuf::from("/usr/bin/linux.uml"),
            release: "6.1.176".into(),
            nr_cpus: 1,
            hz: Some(100),
        }
    }

    fn spec() -> GuestSpec {
        GuestSpec {
            vcpus: 1,
            memory_mib: 256,
            kernel: None,
            agent: AgentBinary {
                path: "/a".into(),
                sha256: String::new(),
                size: 0,
            },
            workdir: PathBuf::from("/tmp/w"),
            label: "uml-0".into(),
            devices: Default::default(),
        }
    }

    fn cfg() -> UmlConfig {
        UmlConfig {
            lpj: Some(24_454_100),
            ..UmlConfig::new(&kernel(), &spec())
        }
    }

    #[test]
    fn standard_command_line() {
        let v = command_line(&cfg());
        assert_eq!(
            v,
            [
                "/usr/bin/linux.uml",
                "mem=256M",
                "initrd=initramfs.cpio",
                "umid=uml-0",
                "uml_dir=.",
                "con=none",
                "ssl=none",
                "con0=null,fd:1",
                "con1=fd:3",
                "quiet",
                "lpj=24454100",
                "pty.legacy_count=0",
                "initcall_blacklist=raid6_select_algo,raid6_init",
                "hvbench_init=1",
                "hvbench_channel=tty1",
            ]
        );
    }

    #[test]
    fn no_argument_holds_a_space_or_a_path_whatever_the_work_directory() {
        let mut s = spec();
        s.workdir = PathBuf::from("/tmp/a dir; rm -rf x");
        s.label = "a b/../c;d".into();
        let c = UmlConfig::new(&kernel(), &s);
        let v = command_line(&c);
        // UML joins its arguments into a kernel command line split at spaces.
        assert!(
            v[1..]
                .iter()
                .all(|a| !a.contains(char::is_whitespace) && !a.contains('/')),
            "{v:?}"
        );
        assert!(v.contains(&"umid=a_b_.._c_d".to_string()), "{v:?}");
        assert!(!v.iter().any(|a| a == "sh" || a == "-c"));
    }

    #[test]
    fn calibration_and_initcalls_can_be_left_to_the_kernel() {
        let mut c = cfg();
        c.lpj = None;
        c.skip_initcalls.clear();
        c.legacy_ptys = None;
        c.quiet = false;
        c.memory_mib = 16;
        let v = command_line(&c);
        assert!(!v.iter().any(|a| a.starts_with("lpj=")
            || a.starts_with("initcall_blacklist=")
            || a.starts_with("pty.")
            || a == "quiet"));
        // The floor applies when built from a spec.
        let mut s = spec();
        s.memory_mib = 16;
        assert_eq!(UmlConfig::new(&kernel(), &s).memory_mib, 64);
    }

    #[test]
    fn umids_are_bounded_and_safe() {
        assert_eq!(umid_for("uml-e2e"), "uml-e2e");
        assert_eq!(umid_for(""), "g");
        assert_eq!(umid_for(".hidden"), "g.hidden");
        let long = "x".repeat(200);
        assert_eq!(umid_for(&long).len(), MAX_UMID);
        assert_eq!(umid_for("é ü"), "___");
    }

    #[test]
    fn more_vcpus_than_uml_runs_are_recorded_not_granted() {
        let image = Initramfs {
            path: "/c/initramfs-x.cpio".into(),
            size: 5,
            hash: String::new(),
            modules: Vec::new(),
            skipped_modules: Vec::new(),
        };
        let mut s = spec();
        let one = recorded_settings(&cfg(), &kernel(), &image, &s, "/dev/shm");
        assert!(!one.contains_key("vcpus_requested"), "{one:?}");
        assert!(one["lpj"].starts_with("24454100 "), "{one:?}");
        assert_eq!(one["skipped_initcalls"], "raid6_select_algo,raid6_init");
        assert_eq!(one["cwd"], "/tmp/w");
        s.vcpus = 4;
        let four = recorded_settings(&cfg(), &kernel(), &image, &s, "/dev/shm");
        assert!(
            four["vcpus_requested"].starts_with("4 (UML 6.1.176 is uniprocessor"),
            "{four:?}"
        );
        assert!(!command_line(&cfg()).iter().any(|a| a.starts_with("ncpus")));
    }
}
