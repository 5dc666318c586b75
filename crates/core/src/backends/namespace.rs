//! `namespace`: OS-level virtualization. The agent runs on the host kernel in new pid, mount,
//! net, uts and ipc namespaces (plus a user namespace when hvbench is not root), which is what
//! containers are made of, minus cgroup limits and images.
//!
//! The namespaces are made by `unshare` (util-linux) when hvbench is root, and by bubblewrap
//! when it is not (or when `unshare` is missing). Either way the agent is PID 1 of its PID
//! namespace; that is safe: the agent only acts as a guest's init (mounts, power-off) when the
//! environment says `hvbench_init=1` *and* it is in the initial PID namespace, and this backend
//! never sets that variable. The agent speaks the protocol on stdin/stdout, as with `native`.
//!
//! Everything is stopped for certain: the tool and the agent share one process group (killed by
//! [`crate::guest`]), the agent also dies with the tool (`--kill-child`, `--die-with-parent`),
//! and killing the init of a PID namespace kills every process in it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::open_console;
use super::{Availability, Backend, BackendConfig, BackendError, GuestSpec, Launched};
use crate::agent::AgentBinary;
use crate::devices::Attached;
use crate::launch::host_tool::{is_root, run_bounded, version_line, which};
use crate::launch::spawn_piped;

/// How long the probe's trivial sandbox may take; a working one takes milliseconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The program that makes the namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    /// `unshare` from util-linux.
    Unshare,
    /// `bwrap` from bubblewrap.
    Bwrap,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Unshare => "unshare",
            Tool::Bwrap => "bwrap",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Tool::Unshare => "util-linux",
            Tool::Bwrap => "bubblewrap",
        }
    }
}

/// A complete recipe for one namespace sandbox; [`command_line`] turns it into arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub tool: Tool,
    pub program: PathBuf,
    /// Add a user namespace that maps the caller to root (needed when not root).
    pub user_ns: bool,
    /// `ip` for bringing loopback up inside the new network namespace (unshare only: bwrap
    /// does it itself). Needs `sh` too. `None` leaves loopback down.
    pub ip: Option<PathBuf>,
    /// Join this existing network namespace (one hvbench made, with a veth to the host side)
    /// instead of making an empty one: the `net` suite's guest network.
    pub join_net: Option<PathBuf>,
}

impl Plan {
    /// The namespaces the sandbox gets, for the result document.
    pub fn namespaces(&self) -> String {
        let mut ns = vec!["pid", "mount", "net", "uts", "ipc"];
        if self.user_ns {
            ns.push("user");
        }
        ns.join(",")
    }

    fn loopback(&self) -> &'static str {
        match (self.tool, &self.ip) {
            (Tool::Bwrap, _) => "up (bwrap)",
            (Tool::Unshare, Some(_)) => "up (ip link set lo up)",
            (Tool::Unshare, None) => "down (iproute2 missing)",
        }
    }
}

/// The command that runs `program args...` (the agent) in the namespaces of `plan`.
pub fn command_line(plan: &Plan, program: &Path, args: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(ns) = &plan.join_net {
        v.extend([
            "nsenter".to_string(),
            format!("--net={}", ns.display()),
            "--".to_string(),
        ]);
    }
    v.push(plan.program.display().to_string());
    let s = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match plan.tool {
        Tool::Unshare => {
            if plan.user_ns {
                v.extend(s(&["--user", "--map-root-user"]));
            }
            // --fork: the agent becomes PID 1 of the new PID namespace (and /proc, mounted
            // afresh by --mount-proc, shows that namespace). --kill-child: the agent dies with
            // unshare, whoever kills it.
            v.extend(s(&[
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "--mount",
            ]));
            if plan.join_net.is_none() {
                v.push("--net".into());
            }
            v.extend(s(&["--uts", "--ipc", "--"]));
            if let Some(ip) = &plan.ip {
                // Loopback starts down in a new network namespace. `exec` keeps the agent PID 1.
                v.extend(s(&[
                    "/bin/sh",
                    "-c",
                    "\"$1\" link set lo up; shift; exec \"$@\"",
                    "sh",
                ]));
                v.push(ip.display().to_string());
            }
        }
        Tool::Bwrap => {
            if plan.user_ns {
                v.extend(s(&["--unshare-user", "--uid", "0", "--gid", "0"]));
            }
            // The host's file system as it is (like unshare --mount), a fresh /proc for the new
            // PID namespace; --as-pid-1 makes the agent PID 1 as with unshare (no bwrap reaper
            // inside); --die-with-parent is bwrap's --kill-child.
            v.extend(s(&[
                "--unshare-pid",
                "--unshare-net",
                "--unshare-uts",
                "--unshare-ipc",
                "--die-with-parent",
                "--as-pid-1",
                "--dev-bind",
                "/",
                "/",
                "--proc",
                "/proc",
                "--",
            ]));
        }
    }
    v.push(program.display().to_string());
    v.extend(s(args));
    v
}

/// Picks the tool: `unshare` as root (the plain kernel interface, nothing else in between),
/// bubblewrap otherwise (it maps the user to root in a user namespace and brings loopback up).
pub fn choose(
    forced: Option<Tool>,
    root: bool,
    unshare: Option<PathBuf>,
    bwrap: Option<PathBuf>,
    ip: Option<PathBuf>,
) -> Result<Plan, Availability> {
    let order = match (forced, root) {
        (Some(t), _) => vec![t],
        (None, true) => vec![Tool::Unshare, Tool::Bwrap],
        (None, false) => vec![Tool::Bwrap, Tool::Unshare],
    };
    for tool in &order {
        let program = match tool {
            Tool::Unshare => unshare.clone(),
            Tool::Bwrap => bwrap.clone(),
        };
        if let Some(program) = program {
            return Ok(Plan {
                tool: *tool,
                program,
                user_ns: !root,
                ip: if *tool == Tool::Unshare {
                    ip.clone()
                } else {
                    None
                },
                join_net: None,
            });
        }
    }
    let names: Vec<String> = order
        .iter()
        .map(|t| format!("{} ({})", t.name(), t.package()))
        .collect();
    let packages: Vec<&str> = order.iter().map(|t| t.package()).collect();
    Err(Availability::Unavailable {
        reason: format!("{} not found", names.join(" nor ")),
        hint: format!("apt-get install {}", packages.join(" or ")),
    })
}

/// The Linux-namespaces backend.
#[derive(Debug, Default)]
pub struct Namespace {
    forced: Option<Tool>,
}

/// What the probe found, kept for the process (probes are per process and tools do not change
/// while hvbench runs).
#[derive(Debug, Clone)]
struct Probed {
    availability: Availability,
    plan: Option<Plan>,
    version: Option<String>,
}

impl Namespace {
    /// Picks the tool by privilege and what is installed.
    pub fn new() -> Namespace {
        Namespace { forced: None }
    }

    /// Always uses `tool` (tests run the same guest under both).
    pub fn with_tool(tool: Tool) -> Namespace {
        Namespace { forced: Some(tool) }
    }

    fn probed(&self, agent: &AgentBinary) -> Probed {
        static CACHE: OnceLock<Mutex<BTreeMap<Option<Tool>, Probed>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(BTreeMap::new()));
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(self.forced)
            .or_insert_with(|| self.probe_uncached(agent))
            .clone()
    }

    fn probe_uncached(&self, agent: &AgentBinary) -> Probed {
        let root = is_root();
        let plan = match choose(
            self.forced,
            root,
            which("unshare"),
            which("bwrap"),
            which("ip"),
        ) {
            Ok(p) => p,
            Err(availability) => {
                return Probed {
                    availability,
                    plan: None,
                    version: None,
                }
            }
        };
        // "unshare from util-linux 2.38.1", "bubblewrap 0.8.0"
        let version = version_line(&plan.program, &["--version"])
            .map(|v| v.trim_start_matches("unshare from ").to_string());
        let argv = command_line(&plan, &agent.path, &["--version"]);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let availability = match run_bounded(&mut cmd, Stdio::null(), PROBE_TIMEOUT) {
            Ok(done) if done.status.success() && done.stdout.contains("hvbench-agent") => {
                Availability::Available {
                    detail: format!(
                        "{} ({}), namespaces {}, loopback {}, sandbox started in {} ms",
                        plan.tool.name(),
                        version.as_deref().unwrap_or("version unknown"),
                        plan.namespaces(),
                        plan.loopback(),
                        done.elapsed.as_millis()
                    ),
                }
            }
            Ok(done) => Availability::Unavailable {
                reason: format!(
                    "{} could not make the namespaces: {}",
                    plan.tool.name(),
                    done.complaint()
                ),
                hint: userns_hint(root),
            },
            Err(e) => Availability::Unavailable {
                reason: e.to_string(),
                hint: userns_hint(root),
            },
        };
        Probed {
            availability,
            plan: Some(plan),
            version,
        }
    }
}

/// The step that most likely fixes a failing sandbox, from the host's sysctls.
fn userns_hint(root: bool) -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if root {
        return "run hvbench directly on the host, not inside a container that forbids namespaces (seccomp/AppArmor)".into();
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "unprivileged user namespaces are disabled: sysctl kernel.unprivileged_userns_clone=1 (or run as root)".into();
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return "user namespaces are disabled: sysctl user.max_user_namespaces=15000 (or run as root)".into();
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return "AppArmor restricts unprivileged user namespaces: sysctl kernel.apparmor_restrict_unprivileged_userns=0 (or run as root)".into();
    }
    "run as root, or allow unprivileged user namespaces".into()
}

impl Backend for Namespace {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn technique(&self) -> &'static str {
        "OS-level virtualization: Linux namespaces"
    }

    fn probe(&self, agent: &AgentBinary) -> Availability {
        self.probed(agent).availability
    }

    fn hello_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        let probed = self.probed(&spec.agent);
        let plan = match (&probed.availability, probed.plan) {
            (Availability::Available { .. }, Some(plan)) => plan,
            (Availability::Unavailable { reason, hint }, _) => {
                return Err(BackendError::Unavailable {
                    backend: self.name().into(),
                    reason: reason.clone(),
                    hint: hint.clone(),
                })
            }
            (Availability::Available { .. }, None) => {
                return Err(BackendError::Setup("namespace probe found no tool".into()))
            }
        };
        let mut plan = plan;
        let mut attached = Attached::default();
        if let Some(d) = &spec.devices.disk {
            attached.disk = Some(d.image.display().to_string());
        }
        if let Some(r) = &spec.devices.rootfs {
            // The host's file system is visible as it is; the agent mounts the root in its own
            // mount namespace.
            attached.rootfs = Some(r.tree.display().to_string());
            attached.app_dir = Some(r.app_dir.display().to_string());
        }
        if spec.devices.net.is_some() {
            if plan.tool != Tool::Unshare {
                return Err(BackendError::Setup(
                    "the namespace guest's network (a veth pair between namespaces hvbench creates) needs root and unshare; run as root".into(),
                ));
            }
            plan.join_net = Some(
                crate::devices::veth_endpoint(&spec.label, &mut attached)
                    .map_err(BackendError::Setup)?,
            );
        }
        let app_mount = super::native::app_mount(spec)?;
        let console = spec.workdir.join("agent.stderr");
        let stderr = open_console(&console)?;
        let argv = command_line(&plan, &spec.agent.path, &[]);
        let piped = spawn_piped(Command::new(&argv[0]).args(&argv[1..]), stderr).map_err(|e| {
            BackendError::Spawn {
                what: argv[0].clone(),
                source: e,
            }
        })?;
        let mut versions = BTreeMap::new();
        if let Some(v) = probed.version {
            versions.insert(plan.tool.name().to_string(), v);
        }
        let mut settings = BTreeMap::from([
            ("tool".to_string(), plan.tool.name().to_string()),
            ("namespaces".to_string(), plan.namespaces()),
            ("loopback".to_string(), plan.loopback().to_string()),
            (
                "agent_pid".to_string(),
                "1 (init of the PID namespace)".into(),
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
                    "{} on the host's file system (same kernel)",
                    d.image.display()
                ),
            );
        }
        if plan.join_net.is_some() {
            settings.insert(
                "net".into(),
                "veth pair between a guest and a host-side network namespace of hvbench's".into(),
            );
        }
        if let Some(m) = app_mount {
            settings.insert("app_disk".into(), m.describe());
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

    fn plan(tool: Tool, user_ns: bool, ip: bool) -> Plan {
        Plan {
            tool,
            program: PathBuf::from(format!("/usr/bin/{}", tool.name())),
            user_ns,
            ip: ip.then(|| PathBuf::from("/usr/sbin/ip")),
            join_net: None,
        }
    }

    #[test]
    fn unshare_as_root_makes_agent_pid1_with_loopback() {
        let v = command_line(
            &plan(Tool::Unshare, false, true),
            Path::new("/opt/hv bench/hvbench-agent"),
            &[],
        );
        assert_eq!(v[0], "/usr/bin/unshare");
        for flag in [
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--mount",
            "--net",
            "--uts",
            "--ipc",
        ] {
            assert!(v.iter().any(|a| a == flag), "{flag} missing: {v:?}");
        }
        assert!(!v.iter().any(|a| a == "--user"));
        let dd = v.iter().position(|a| a == "--").unwrap();
        assert_eq!(v[dd + 1], "/bin/sh");
        assert!(v[dd + 3].contains("exec \"$@\""));
        assert_eq!(v[dd + 5], "/usr/sbin/ip");
        // A path with a space stays one argument, last.
        assert_eq!(v.last().unwrap(), "/opt/hv bench/hvbench-agent");
        assert!(!v.iter().any(|a| a.contains("hvbench_init")));
    }

    #[test]
    fn unshare_without_root_maps_root_and_without_ip_runs_the_agent_directly() {
        let v = command_line(
            &plan(Tool::Unshare, true, false),
            Path::new("/a/hvbench-agent"),
            &["--version"],
        );
        assert_eq!(v[1..3], ["--user", "--map-root-user"]);
        let dd = v.iter().position(|a| a == "--").unwrap();
        assert_eq!(v[dd + 1..], ["/a/hvbench-agent", "--version"]);
    }

    #[test]
    fn bwrap_shares_the_host_tree_with_a_new_proc() {
        let v = command_line(
            &plan(Tool::Bwrap, true, false),
            Path::new("/a/hvbench-agent"),
            &[],
        );
        for flag in [
            "--unshare-user",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-ipc",
            "--die-with-parent",
            "--as-pid-1",
        ] {
            assert!(v.iter().any(|a| a == flag), "{flag} missing: {v:?}");
        }
        let w = v.windows(3).any(|w| w == ["--dev-bind", "/", "/"]);
        assert!(w, "{v:?}");
        assert_eq!(v.last().unwrap(), "/a/hvbench-agent");
    }

    #[test]
    fn tool_choice_follows_privilege_and_what_is_installed() {
        let u = Some(PathBuf::from("/usr/bin/unshare"));
        let b = Some(PathBuf::from("/usr/bin/bwrap"));
        let ip = Some(PathBuf::from("/usr/sbin/ip"));
        let p = choose(None, true, u.clone(), b.clone(), ip.clone()).unwrap();
        assert_eq!(
            (p.tool, p.user_ns, p.ip.is_some()),
            (Tool::Unshare, false, true)
        );
        let p = choose(None, false, u.clone(), b.clone(), ip.clone()).unwrap();
        assert_eq!(
            (p.tool, p.user_ns, p.ip.is_some()),
            (Tool::Bwrap, true, false)
        );
        let p = choose(None, false, u.clone(), None, ip.clone()).unwrap();
        assert_eq!((p.tool, p.user_ns), (Tool::Unshare, true));
        let p = choose(None, true, None, b.clone(), None).unwrap();
        assert_eq!(p.tool, Tool::Bwrap);
        let p = choose(Some(Tool::Bwrap), true, u.clone(), b, None).unwrap();
        assert_eq!((p.tool, p.user_ns), (Tool::Bwrap, false));
        let Err(Availability::Unavailable { reason, hint }) = choose(None, true, None, None, ip)
        else {
            panic!("no tool should be unavailable")
        };
        assert!(
            reason.contains("unshare") && reason.contains("bwrap"),
            "{reason}"
        );
        assert!(hint.contains("apt-get install util-linux"), "{hint}");
        let Err(Availability::Unavailable { hint, .. }) =
            choose(Some(Tool::Bwrap), true, u, None, None)
        else {
            panic!("forced bwrap without bwrap should be unavailable")
        };
        assert_eq!(hint, "apt-get install bubblewrap");
    }
}
