//! `gvisor`: a user-space kernel. The agent runs under gVisor's Sentry, which implements the
//! Linux system call interface in a host process, so every system call of the agent is served
//! by gVisor instead of the host kernel.
//!
//! Guests are started with `runsc run` on an OCI bundle that hvbench writes into the guest's
//! work directory: the host's root file system under a memory overlay (what `runsc do` does),
//! new pid, net, ipc, uts and mount namespaces, the agent's stdin/stdout passed through as the
//! protocol channel. `runsc do` would be shorter but keeps its bundle and sandbox state in
//! `$TMPDIR/runsc-do*`, which a killed guest leaves behind, and pointing TMPDIR into hvbench's
//! work directory does not work: the sandbox, unprivileged, mounts its chroot on TMPDIR and
//! cannot reach it through hvbench's mode-0700 directories. With `runsc run`, the bundle and
//! `--root` (the state) live in the guest's work directory, which hvbench removes.
//!
//! How gVisor intercepts system calls is its *platform*, and it dominates the numbers, so the
//! platform is chosen by probe (or forced with `--gvisor-platform`) and recorded with the
//! runsc version in every result. The sandbox dies with `runsc run` (it is started attached),
//! which is what the process-group kill of [`crate::guest`] reaches.

use crate::devices::Attached;
use crate::netns::VethPair;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::open_console;
use super::{
    Availability, Backend, BackendConfig, BackendError, BackendOptions, GuestSpec, Launched,
};
use crate::agent::AgentBinary;
use crate::launch::host_tool::{is_root, run_bounded, version_line, which};
use crate::launch::spawn_piped;
use crate::workdir::WorkDir;

mod spec;

use spec::prepare;
pub use spec::{command_line, container_id, oci_spec, SandboxDevices};

/// How long one platform may take to start a sandbox in the probe. A working one takes a few
/// hundred milliseconds; the kvm platform on a /dev/kvm that cannot run guests hangs forever.
const PLATFORM_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

const HINT_INSTALL: &str =
    "apt-get install runsc (or follow https://gvisor.dev/docs/user_guide/install/)";

/// The gVisor backend.
#[derive(Debug, Default)]
pub struct Gvisor {
    forced_platform: Option<String>,
}

impl Gvisor {
    pub fn new(opts: &BackendOptions) -> Gvisor {
        Gvisor {
            forced_platform: opts.gvisor_platform.clone(),
        }
    }
}

/// The platform and flags a probe found to work.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub platform: String,
    /// Flags beyond the defaults that this host needs (see [`extra_flags`]).
    pub extra_flags: Vec<String>,
    /// The flag that puts the root file system under a memory overlay, when this runsc has
    /// one (`--overlay2=root:memory`, or `--overlay` in old versions); without it the root is
    /// read-only and /tmp a tmpfs.
    pub overlay: Option<String>,
    /// How the platform was chosen: what was tried, what was skipped and why.
    pub how: String,
}

#[derive(Debug, Clone)]
struct Probed {
    availability: Availability,
    runsc: Option<PathBuf>,
    version: Option<String>,
    choice: Option<Choice>,
}

/// The platforms a runsc names in `runsc flags` ("specifies which platform to use: ptrace
/// (default), kvm." in 2022, "systrap (default), ptrace, kvm" later).
pub fn platforms_from_flags(text: &str) -> Vec<String> {
    let Some(rest) = text.lines().find_map(|l| {
        l.split_once("specifies which platform to use:")
            .map(|(_, r)| r)
    }) else {
        return Vec::new();
    };
    let list = rest.split('.').next().unwrap_or("");
    list.split(',')
        .map(|p| p.replace("(default)", "").trim().to_string())
        .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
        .collect()
}

/// The order in which to try platforms, and notes on those left out.
///
/// - `systrap` first: gVisor's default since 2023, its fastest platform without hardware
///   virtualization, and what users of a current runsc get.
/// - `kvm` next on bare metal, where it is fastest (the Sentry runs as a guest kernel); but on
///   a host that is itself a VM it needs nested virtualization, gVisor documents it as slow
///   there, and a /dev/kvm that exists may not run guests at all (this project's development
///   machines hang), so on a VM it comes last.
/// - `ptrace`: works everywhere, slowest (every system call is two ptrace stops); the default
///   of runsc before systrap.
pub fn platform_order(
    known: &[String],
    host_is_vm: bool,
    dev_kvm: bool,
) -> (Vec<String>, Vec<String>) {
    let preference: &[&str] = if host_is_vm {
        &["systrap", "ptrace", "kvm"]
    } else {
        &["systrap", "kvm", "ptrace"]
    };
    let mut order = Vec::new();
    let mut notes = Vec::new();
    for p in preference {
        let has = known.is_empty() || known.iter().any(|k| k == p);
        if !has {
            notes.push(format!("{p}: not in this runsc"));
        } else if *p == "kvm" && !dev_kvm {
            notes.push("kvm: no /dev/kvm".into());
        } else {
            order.push(p.to_string());
        }
    }
    // Platforms this runsc has that hvbench does not know yet, last.
    order.extend(
        known
            .iter()
            .filter(|k| !preference.contains(&k.as_str()))
            .cloned(),
    );
    (order, notes)
}

/// The overlay flag this runsc understands, from `runsc flags`.
pub fn overlay_flag(flags_text: &str) -> Option<String> {
    let has = |name: &str| {
        flags_text
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    };
    if has("-overlay2") {
        Some("--overlay2=root:memory".into())
    } else if has("-overlay") {
        Some("--overlay".into())
    } else {
        None
    }
}

/// Flags this host needs beyond the defaults, each for a reason:
/// - `--ignore-cgroups`: by default runsc makes cgroups of its own for every sandbox, in every
///   cgroup-v1 hierarchy, and a runsc that is killed (a guest stopped for certain, a probe on
///   a hanging platform) leaves them all behind. hvbench sets no limits and meters CPU through
///   its own cgroup, which the sandbox then stays in.
/// - `--rootless` when not root: runsc then makes the sandbox in a user namespace.
pub fn extra_flags(flags_text: &str, root: bool) -> Vec<String> {
    let mut v = Vec::new();
    if flags_text.contains("-ignore-cgroups") {
        v.push("--ignore-cgroups".to_string());
    }
    if !root {
        v.push("--rootless".to_string());
    }
    v
}

/// Starts the agent's `--version` in a sandbox; Ok(elapsed) when it printed its name.
fn try_platform(runsc: &Path, choice: &Choice, agent: &AgentBinary) -> Result<Duration, String> {
    try_sandbox(runsc, choice, agent, &SandboxDevices::default())
}

/// Whether gVisor's own network stack can take over a namespace's veth here. Some runsc
/// releases cannot on newer host kernels: they take every namespace for the root one
/// (`cannot run with network enabled in root network namespace`). Probed once per process.
///
/// The cause, read in runsc's source (`runsc/sandbox/network.go`, `isRootNS`, unchanged up to
/// at least 20240729, the bookworm-backports release): runsc decides that it is in the root
/// network namespace when `/proc/sys/net/core/rmem_default` exists, which held only there
/// until Linux made that sysctl per namespace; on the 6.18 hosts here it exists in every
/// namespace (`unshare -n ls /proc/sys/net/core`). Hiding the file from runsc in a private
/// mount namespace did not help (runsc sets up its own mounts), so hvbench records the
/// fallback to hostinet with this reason rather than patching around runsc.
fn netstack_works(runsc: &Path, choice: &Choice, agent: &AgentBinary) -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let pair = VethPair::create("gvisor-netprobe")?;
            let dev = SandboxDevices {
                netns: Some(pair.guest.path()),
                ..Default::default()
            };
            try_sandbox(runsc, choice, agent, &dev).map(|_| ())
        })
        .clone()
}

fn try_sandbox(
    runsc: &Path,
    choice: &Choice,
    agent: &AgentBinary,
    dev: &SandboxDevices,
) -> Result<Duration, String> {
    let wd = WorkDir::new("gvisor-probe").map_err(|e| format!("work directory: {e}"))?;
    let args = [agent.path.display().to_string(), "--version".to_string()];
    let argv = prepare(runsc, wd.path(), "probe", choice, &args, dev)?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(wd.path());
    match run_bounded(&mut cmd, Stdio::null(), PLATFORM_PROBE_TIMEOUT) {
        Ok(done) if done.status.success() && done.stdout.contains("hvbench-agent") => {
            Ok(done.elapsed)
        }
        Ok(done) => Err(done.complaint().replace('\n', " / ")),
        Err(e) => Err(e.to_string()),
    }
}

impl Gvisor {
    fn probed(&self, agent: &AgentBinary) -> Probed {
        static CACHE: OnceLock<Mutex<BTreeMap<Option<String>, Probed>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(BTreeMap::new()));
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(self.forced_platform.clone())
            .or_insert_with(|| self.probe_uncached(agent))
            .clone()
    }

    fn probe_uncached(&self, agent: &AgentBinary) -> Probed {
        let unavailable = |reason: String, hint: &str, runsc, version| Probed {
            availability: Availability::Unavailable {
                reason,
                hint: hint.to_string(),
            },
            runsc,
            version,
            choice: None,
        };
        let Some(runsc) = which("runsc") else {
            return unavailable("runsc not found".into(), HINT_INSTALL, None, None);
        };
        let version = version_line(&runsc, &["--version"])
            .map(|l| l.trim_start_matches("runsc version").trim().to_string());
        let help = |args: &[&str]| {
            run_bounded(
                Command::new(&runsc).args(args),
                Stdio::null(),
                Duration::from_secs(5),
            )
            .map(|d| d.stdout + &d.stderr)
            .unwrap_or_default()
        };
        let flags = help(&["flags"]);
        let known = platforms_from_flags(&flags);
        let overlay = overlay_flag(&flags);
        let (order, mut notes) = match &self.forced_platform {
            Some(p) => {
                if !known.is_empty() && !known.contains(p) {
                    return unavailable(
                        format!(
                            "this runsc has no platform {p:?} (it has {})",
                            known.join(", ")
                        ),
                        "choose one of those with --gvisor-platform, or leave the choice to the probe",
                        Some(runsc),
                        version,
                    );
                }
                (vec![p.clone()], vec![format!("{p}: forced")])
            }
            None => {
                let host = crate::host::HostInfo::detect();
                let (order, mut notes) =
                    platform_order(&known, host.virtualization != "none", host.dev_kvm);
                if host.virtualization != "none" {
                    notes.push(format!(
                        "host is a VM ({}): kvm would run nested",
                        host.virtualization
                    ));
                }
                (order, notes)
            }
        };
        let base = extra_flags(&flags, is_root());
        for platform in &order {
            let mut choice = Choice {
                platform: platform.clone(),
                extra_flags: base.clone(),
                overlay: overlay.clone(),
                how: String::new(),
            };
            match try_platform(&runsc, &choice, agent) {
                Ok(took) => {
                    notes.insert(
                        0,
                        format!("{platform}: sandbox started in {} ms", took.as_millis()),
                    );
                    choice.how = notes.join("; ");
                    return Probed {
                        availability: Availability::Available {
                            detail: format!(
                                "runsc {}, platform {} ({})",
                                version.as_deref().unwrap_or("(version unknown)"),
                                choice.platform,
                                choice.how
                            ),
                        },
                        runsc: Some(runsc),
                        version,
                        choice: Some(choice),
                    };
                }
                Err(e) => notes.push(format!("{platform}: {e}")),
            }
        }
        let (reason, hint) = match &self.forced_platform {
            Some(p) => (
                format!(
                    "the forced platform {p} did not start a sandbox: {}",
                    notes.last().map_or("", |n| n.trim_start_matches(&format!("{p}: ")))
                ),
                format!(
                    "leave the platform to the probe (no --gvisor-platform){}",
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!(", or force another of {}", known.join(", "))
                    }
                ),
            ),
            None => (
                format!("no gVisor platform started a sandbox: {}", notes.join("; ")),
                "run hvbench as root (runsc needs namespaces and ptrace), or see https://gvisor.dev/docs/user_guide/FAQ/".to_string(),
            ),
        };
        unavailable(reason, &hint, Some(runsc), version)
    }
}

impl Backend for Gvisor {
    fn name(&self) -> &'static str {
        "gvisor"
    }

    fn technique(&self) -> &'static str {
        "user-space kernel (gVisor)"
    }

    fn probe(&self, agent: &AgentBinary) -> Availability {
        self.probed(agent).availability
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        let probed = self.probed(&spec.agent);
        let (runsc, choice) = match (&probed.availability, probed.runsc, probed.choice) {
            (Availability::Available { .. }, Some(r), Some(c)) => (r, c),
            (Availability::Unavailable { reason, hint }, _, _) => {
                return Err(BackendError::Unavailable {
                    backend: self.name().into(),
                    reason: reason.clone(),
                    hint: hint.clone(),
                })
            }
            _ => return Err(BackendError::Setup("gvisor probe chose no platform".into())),
        };
        let console = spec.workdir.join("runsc.stderr");
        let stderr = open_console(&console)?;
        let args = [spec.agent.path.display().to_string()];
        let mut dev = SandboxDevices::default();
        let mut hostinet_why = None;
        let mut attached = Attached::default();
        if let Some(d) = &spec.devices.disk {
            dev.disk = Some((d.image.clone(), !d.writable));
            attached.disk = Some(d.image.display().to_string());
        }
        if let Some(r) = &spec.devices.rootfs {
            dev.binds.push((r.tree.clone(), true));
            dev.binds.push((r.app_dir.clone(), false));
            attached.rootfs = Some(r.tree.display().to_string());
            attached.app_dir = Some(r.app_dir.display().to_string());
        }
        if spec.devices.net.is_some() {
            if let Err(why) = netstack_works(&runsc, &choice, &spec.agent) {
                dev.hostinet = true;
                hostinet_why = Some(why);
            }
            dev.netns = Some(
                crate::devices::veth_endpoint(&spec.label, &mut attached)
                    .map_err(BackendError::Setup)?,
            );
        }
        let app_mount = super::native::app_mount(spec)?;
        let argv = prepare(&runsc, &spec.workdir, &spec.label, &choice, &args, &dev)
            .map_err(BackendError::Setup)?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(&spec.workdir);
        let piped = spawn_piped(&mut cmd, stderr).map_err(|e| BackendError::Spawn {
            what: argv[0].clone(),
            source: e,
        })?;
        let mut versions = BTreeMap::new();
        if let Some(v) = probed.version {
            versions.insert("runsc".to_string(), v);
        }
        let mut settings = BTreeMap::from([
            ("platform".to_string(), choice.platform.clone()),
            ("platform_choice".to_string(), choice.how.clone()),
            (
                "network".to_string(),
                match (&dev.netns, &hostinet_why) {
                    (None, _) => "none (gVisor loopback only)".into(),
                    (Some(_), None) => {
                        "sandbox: gVisor's netstack on a veth to a host-side namespace of hvbench's"
                            .into()
                    }
                    (Some(_), Some(why)) => format!(
                        "host (hostinet: socket calls go to the host kernel's stack, in a namespace of hvbench's with a veth to a host-side one); gVisor's own netstack (--network=sandbox) failed here: {why} (this runsc's root-namespace check reads /proc/sys/net/core/rmem_default, which newer kernels have in every namespace)"
                    ),
                },
            ),
            (
                "filesystem".to_string(),
                match &choice.overlay {
                    Some(flag) => format!("host root under a memory overlay ({flag})"),
                    None => "host root read-only, tmpfs on /tmp".into(),
                },
            ),
            (
                "namespaces".to_string(),
                "pid,net,ipc,uts,mount (gVisor's)".into(),
            ),
            (
                "limits".to_string(),
                "none: host CPUs and memory are shared".into(),
            ),
        ]);
        if let Some(d) = &spec.devices.disk {
            settings.insert(
                "disk".into(),
                format!(
                    "{} bind-mounted through gVisor's gofer: the sandbox does the host file I/O, and an O_DIRECT inside is not necessarily one on the host (random writes measured faster than the host's direct writes)",
                    d.image.display()
                ),
            );
        }
        if let Some(m) = app_mount {
            settings.insert(
                "app_disk".into(),
                format!("{}, bind-mounted through gVisor's gofer", m.describe()),
            );
            attached.keep.push(Box::new(m));
        }
        Ok(Launched {
            processes: vec![piped.child],
            reader: piped.reader,
            writer: piped.writer,
            console_log: Some(console),
            config: BackendConfig {
                command_line: argv,
                versions,
                settings,
                ..Default::default()
            },
            attached,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn platforms_are_read_from_runsc_flags() {
        let old = "  -platform string\n    \tspecifies which platform to use: ptrace (default), kvm. (default \"ptrace\")\n";
        assert_eq!(platforms_from_flags(old), ["ptrace", "kvm"]);
        let new = "\tspecifies which platform to use: systrap (default), ptrace, kvm. (default \"systrap\")";
        assert_eq!(platforms_from_flags(new), ["systrap", "ptrace", "kvm"]);
        assert!(platforms_from_flags("nothing here").is_empty());
    }

    #[test]
    fn kvm_comes_last_on_a_vm_and_second_on_bare_metal() {
        let all = strings(&["systrap", "ptrace", "kvm"]);
        assert_eq!(
            platform_order(&all, true, true).0,
            ["systrap", "ptrace", "kvm"]
        );
        assert_eq!(
            platform_order(&all, false, true).0,
            ["systrap", "kvm", "ptrace"]
        );
        let (order, notes) = platform_order(&strings(&["ptrace", "kvm"]), false, false);
        assert_eq!(order, ["ptrace"]);
        assert!(
            notes.iter().any(|n| n.starts_with("systrap: not")),
            "{notes:?}"
        );
        assert!(notes.iter().any(|n| n == "kvm: no /dev/kvm"), "{notes:?}");
        // Unknown platforms of a future runsc are tried last; an unreadable list tries all.
        let (order, _) = platform_order(&strings(&["ptrace", "warp"]), true, true);
        assert_eq!(order, ["ptrace", "warp"]);
        assert_eq!(
            platform_order(&[], true, true).0,
            ["systrap", "ptrace", "kvm"]
        );
    }

    #[test]
    fn overlay_flag_follows_the_runsc_version() {
        let new = "  -overlay\n    \tDEPRECATED\n  -overlay2 value\n    \twrap mounts\n";
        assert_eq!(overlay_flag(new).as_deref(), Some("--overlay2=root:memory"));
        let old = "  -overlay\n    \twrap filesystem mounts with writable overlay\n";
        assert_eq!(overlay_flag(old).as_deref(), Some("--overlay"));
        assert_eq!(overlay_flag("  -platform string\n"), None);
    }

    #[test]
    fn cgroups_are_left_to_hvbench_and_rootless_is_for_users() {
        let flags = "  -ignore-cgroups\n    \tdon't configure cgroups.\n";
        assert_eq!(extra_flags(flags, true), ["--ignore-cgroups"]);
        assert_eq!(
            extra_flags(flags, false),
            ["--ignore-cgroups", "--rootless"]
        );
        assert!(extra_flags("", true).is_empty());
    }
}
