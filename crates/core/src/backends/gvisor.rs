//! `gvisor`: a user-space kernel. The agent runs under gVisor's Sentry, which implements the
//! Linux system call interface in a host process, so every system call of the agent is served
//! by gVisor instead of the host kernel.
//!
//! Guests are started with `runsc do`: a sandbox over the host's root file system (read-only,
//! with a tmpfs overlay), the agent's stdin/stdout passed through as the protocol channel.
//! How gVisor intercepts system calls is its *platform*, and it dominates the numbers, so the
//! platform is chosen by probe (or forced with `--gvisor-platform`) and recorded with the
//! runsc version in every result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::host_tool::{is_root, open_console, run_bounded, version_line, which};
use super::{
    Availability, Backend, BackendConfig, BackendError, BackendOptions, GuestSpec, Launched,
};
use crate::agent::AgentBinary;
use crate::guest::spawn_in_own_group;
use crate::workdir::WorkDir;

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
    /// Flags beyond the defaults that this host needs (`--rootless`, `--ignore-cgroups`).
    pub extra_flags: Vec<String>,
    /// Whether `runsc do` has `--quiet` (keeps runsc's own messages off the agent's stdout).
    pub quiet: bool,
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
    let Some(rest) = text
        .lines()
        .find_map(|l| l.split_once("specifies which platform to use:").map(|(_, r)| r))
    else {
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

/// Flags before the `do` subcommand.
pub fn global_flags(root_dir: &Path, platform: &str, extra: &[String]) -> Vec<String> {
    let mut v = vec![
        format!("--root={}", root_dir.display()),
        // No network device: `--network=sandbox` (the default of `do`) would add a veth pair
        // and routes on the host, which a killed guest could leave behind. gVisor's own
        // loopback is there either way.
        "--network=none".to_string(),
        format!("--platform={platform}"),
    ];
    v.extend(extra.iter().cloned());
    v
}

/// The full command line that runs `program args...` (the agent) in a sandbox.
pub fn command_line(
    runsc: &Path,
    root_dir: &Path,
    choice: &Choice,
    program: &Path,
    args: &[&str],
) -> Vec<String> {
    let mut v = vec![runsc.display().to_string()];
    v.extend(global_flags(root_dir, &choice.platform, &choice.extra_flags));
    v.push("do".into());
    if choice.quiet {
        v.push("--quiet".into());
    }
    v.push(program.display().to_string());
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

/// A `runsc` command with the environment hvbench gives it: `runsc do` keeps its bundle and
/// sandbox state in `$TMPDIR/runsc-do*` (it does not use `--root` for that), so TMPDIR points
/// into the guest's work directory, which hvbench removes even when runsc was killed.
fn runsc_command(argv: &[String], workdir: &Path) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env("TMPDIR", workdir)
        .current_dir(workdir);
    cmd
}

/// Starts the agent's `--version` in a sandbox; Ok(elapsed) when it printed its name.
fn try_platform(
    runsc: &Path,
    choice: &Choice,
    agent: &AgentBinary,
) -> Result<Duration, String> {
    let wd = WorkDir::new("gvisor-probe").map_err(|e| format!("work directory: {e}"))?;
    let root = wd.path().join("runsc-root");
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let argv = command_line(runsc, &root, choice, &agent.path, &["--version"]);
    let mut cmd = runsc_command(&argv, wd.path());
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
        let known = platforms_from_flags(&help(&["flags"]));
        let quiet = help(&["do", "--help"]).contains("-quiet");
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
        // Without root, runsc needs --rootless (it then runs the sandbox in a user namespace).
        let base: Vec<String> = if is_root() {
            Vec::new()
        } else {
            vec!["--rootless".into()]
        };
        for platform in &order {
            let mut choice = Choice {
                platform: platform.clone(),
                extra_flags: base.clone(),
                quiet,
                how: String::new(),
            };
            let mut result = try_platform(&runsc, &choice, agent);
            // runsc puts the sandbox in a cgroup of its own; inside a container without
            // write access to the cgroup tree that fails, and --ignore-cgroups skips it.
            if matches!(&result, Err(e) if e.contains("cgroup")) {
                choice.extra_flags.push("--ignore-cgroups".into());
                result = try_platform(&runsc, &choice, agent);
            }
            match result {
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
        let hint = if self.forced_platform.is_some() {
            "leave the platform to the probe (no --gvisor-platform), or fix the platform"
        } else {
            "run hvbench as root (runsc needs namespaces and ptrace), or see https://gvisor.dev/docs/user_guide/FAQ/"
        };
        unavailable(
            format!("no gVisor platform started a sandbox: {}", notes.join("; ")),
            hint,
            Some(runsc),
            version,
        )
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
        let root = spec.workdir.join("runsc-root");
        std::fs::create_dir_all(&root).map_err(|e| BackendError::Spawn {
            what: root.display().to_string(),
            source: e,
        })?;
        let console = spec.workdir.join("runsc.stderr");
        let stderr = open_console(&console)?;
        let argv = command_line(&runsc, &root, &choice, &spec.agent.path, &[]);
        let mut cmd = runsc_command(&argv, &spec.workdir);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = spawn_in_own_group(&mut cmd).map_err(|e| BackendError::Spawn {
            what: argv[0].clone(),
            source: e,
        })?;
        let writer = Box::new(child.stdin.take().expect("stdin was piped"));
        let reader = Box::new(child.stdout.take().expect("stdout was piped"));
        let mut versions = BTreeMap::new();
        if let Some(v) = probed.version {
            versions.insert("runsc".to_string(), v);
        }
        let settings = BTreeMap::from([
            ("platform".to_string(), choice.platform.clone()),
            ("platform_choice".to_string(), choice.how.clone()),
            ("network".to_string(), "none (gVisor loopback only)".into()),
            (
                "filesystem".to_string(),
                "host root, read-only under a tmpfs overlay (runsc do)".into(),
            ),
            (
                "limits".to_string(),
                "none: host CPUs and memory are shared".into(),
            ),
        ]);
        Ok(Launched {
            processes: vec![child],
            reader,
            writer,
            console_log: Some(console),
            config: BackendConfig {
                command_line: argv,
                versions,
                settings,
                ..Default::default()
            },
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
        assert_eq!(platform_order(&all, true, true).0, ["systrap", "ptrace", "kvm"]);
        assert_eq!(platform_order(&all, false, true).0, ["systrap", "kvm", "ptrace"]);
        let (order, notes) = platform_order(&strings(&["ptrace", "kvm"]), false, false);
        assert_eq!(order, ["ptrace"]);
        assert!(notes.iter().any(|n| n.starts_with("systrap: not")), "{notes:?}");
        assert!(notes.iter().any(|n| n == "kvm: no /dev/kvm"), "{notes:?}");
        // Unknown platforms of a future runsc are tried last; an unreadable list tries all.
        let (order, _) = platform_order(&strings(&["ptrace", "warp"]), true, true);
        assert_eq!(order, ["ptrace", "warp"]);
        assert_eq!(platform_order(&[], true, true).0, ["systrap", "ptrace", "kvm"]);
    }

    #[test]
    fn command_line_keeps_state_in_the_workdir_and_passes_the_agent_last() {
        let choice = Choice {
            platform: "ptrace".into(),
            extra_flags: strings(&["--ignore-cgroups"]),
            quiet: true,
            how: String::new(),
        };
        let v = command_line(
            Path::new("/usr/bin/runsc"),
            Path::new("/tmp/w x/runsc-root"),
            &choice,
            Path::new("/opt/hvbench-agent"),
            &[],
        );
        assert_eq!(
            v,
            [
                "/usr/bin/runsc",
                "--root=/tmp/w x/runsc-root",
                "--network=none",
                "--platform=ptrace",
                "--ignore-cgroups",
                "do",
                "--quiet",
                "/opt/hvbench-agent"
            ]
        );
    }
}
