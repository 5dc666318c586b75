//! The OCI bundle a gVisor guest runs from: the runtime spec (config.json) over the host's
//! root with the agent's capabilities, namespaces and bind mounts, the container id, and the
//! `runsc run` command line.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::Choice;

/// Capabilities of the agent in its sandbox: root's full set, as `runsc do` grants (the
/// namespace backend's agent is root in its namespaces too).
const CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
];

/// What a sandbox gets beyond the host's root: the `io` suite's disk, the `net` suite's
/// network namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxDevices {
    /// A file bind-mounted at its own path (through the overlay, writes reach the file), and
    /// whether it is read-only.
    pub disk: Option<(PathBuf, bool)>,
    /// Directories bind-mounted at their own paths, and whether read-only: the applications'
    /// root file system (read-only) and their data directory on the host's disk (writable,
    /// so that a database writes to a disk, not to the memory overlay).
    pub binds: Vec<(PathBuf, bool)>,
    /// A network namespace of hvbench's that runsc runs in: gVisor's netstack takes over its
    /// interfaces (`--network=sandbox`), or with `hostinet` the sandbox uses the host kernel's
    /// stack in that namespace (`--network=host`).
    pub netns: Option<PathBuf>,
    pub hostinet: bool,
}

/// The OCI runtime spec (config.json) that runs `args` in a sandbox over the host's root.
pub fn oci_spec(
    args: &[String],
    hostname: &str,
    overlay: bool,
    dev: &SandboxDevices,
) -> serde_json::Value {
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let caps = serde_json::json!(CAPABILITIES);
    // /proc, /sys and /dev are gVisor's own; it mounts them itself.
    let mut mounts = if overlay {
        serde_json::json!([])
    } else {
        serde_json::json!([{ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs" }])
    };
    if let Some(list) = mounts.as_array_mut() {
        for (path, read_only) in dev.disk.iter().chain(&dev.binds) {
            let mode = if *read_only { "ro" } else { "rw" };
            list.push(serde_json::json!({
                "destination": path, "type": "bind", "source": path, "options": ["bind", mode]
            }));
        }
    }
    // With a network, runsc itself is started inside the namespace (see `command_line`):
    // `runsc run` takes the interfaces of the namespace it runs in, not of an OCI path.
    // With hostinet the sandbox must stay in that namespace: no new one for the container.
    let mut namespaces = vec![serde_json::json!({ "type": "pid" })];
    if !dev.hostinet {
        namespaces.push(serde_json::json!({ "type": "network" }));
    }
    for t in ["ipc", "uts", "mount"] {
        namespaces.push(serde_json::json!({ "type": t }));
    }
    serde_json::json!({
        "ociVersion": "1.0.0",
        "process": {
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": [format!("PATH={path}"), "HOME=/root", "TMPDIR=/tmp"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "inheritable": caps,
                "permitted": caps, "ambient": caps
            }
        },
        // Writable only through the memory overlay: nothing the guest writes reaches the host.
        "root": { "path": "/", "readonly": !overlay },
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces
        }
    })
}

/// A container id runsc accepts, unique on this host: runsc names each sandbox's control
/// socket after it in the abstract socket namespace, shared by every runsc of the host (two
/// sandboxes called `probe`, of two hvbench processes, collide: "address already in use").
pub fn container_id(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("hvbench-{}-{n}-{clean}", std::process::id())
}

/// The command line that runs the bundle in `dir` (`dir/bundle`, state in `dir/runsc-root`).
pub fn command_line(
    runsc: &Path,
    dir: &Path,
    id: &str,
    choice: &Choice,
    network: &str,
) -> Vec<String> {
    let mut v = vec![
        runsc.display().to_string(),
        format!("--root={}", dir.join("runsc-root").display()),
        // No network device unless the `net` suite asks: then gVisor's netstack takes the
        // interfaces of a namespace hvbench made (a veth to a host-side namespace), never the
        // host's own. Otherwise gVisor's own loopback is there.
        format!("--network={network}"),
        format!("--platform={}", choice.platform),
    ];
    v.extend(choice.overlay.iter().cloned());
    v.extend(choice.extra_flags.iter().cloned());
    v.extend([
        "run".to_string(),
        "--bundle".to_string(),
        dir.join("bundle").display().to_string(),
        id.to_string(),
    ]);
    v
}

/// Writes the bundle and state directories for `args` under `dir`; returns the command line.
pub(super) fn prepare(
    runsc: &Path,
    dir: &Path,
    label: &str,
    choice: &Choice,
    args: &[String],
    dev: &SandboxDevices,
) -> Result<Vec<String>, String> {
    let bundle = dir.join("bundle");
    for d in [&bundle, &dir.join("runsc-root")] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let id = container_id(label);
    let spec = oci_spec(args, &id, choice.overlay.is_some(), dev);
    let config = bundle.join("config.json");
    std::fs::write(&config, spec.to_string()).map_err(|e| format!("{}: {e}", config.display()))?;
    let network = match (&dev.netns, dev.hostinet) {
        (None, _) => "none",
        (Some(_), false) => "sandbox",
        (Some(_), true) => "host",
    };
    let argv = command_line(runsc, dir, &id, choice, network);
    Ok(match &dev.netns {
        Some(ns) => [
            "nsenter".to_string(),
            format!("--net={}", ns.display()),
            "--".into(),
        ]
        .into_iter()
        .chain(argv)
        .collect(),
        None => argv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_line_keeps_bundle_and_state_in_the_workdir() {
        let choice = Choice {
            platform: "ptrace".into(),
            extra_flags: strings(&["--ignore-cgroups"]),
            overlay: Some("--overlay2=root:memory".into()),
            how: String::new(),
        };
        let v = command_line(
            Path::new("/usr/bin/runsc"),
            Path::new("/tmp/w x/gvisor-0"),
            "hvbench-gvisor-0",
            &choice,
            "none",
        );
        assert_eq!(
            v,
            [
                "/usr/bin/runsc",
                "--root=/tmp/w x/gvisor-0/runsc-root",
                "--network=none",
                "--platform=ptrace",
                "--overlay2=root:memory",
                "--ignore-cgroups",
                "run",
                "--bundle",
                "/tmp/w x/gvisor-0/bundle",
                "hvbench-gvisor-0"
            ]
        );
    }

    #[test]
    fn spec_runs_the_agent_as_root_over_the_host_root() {
        let args = strings(&["/opt/hvbench-agent", "--version"]);
        let spec = oci_spec(&args, "hvbench-g", true, &SandboxDevices::default());
        assert_eq!(spec["process"]["args"], serde_json::json!(args));
        assert_eq!(spec["process"]["user"]["uid"], 0);
        assert_eq!(spec["root"]["path"], "/");
        assert_eq!(spec["root"]["readonly"], false);
        assert_eq!(spec["mounts"], serde_json::json!([]));
        let ns: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "network", "ipc", "uts", "mount"]);
        let env = spec["process"]["env"].to_string();
        assert!(!env.contains("hvbench_init"), "{env}");
        // Without an overlay the root stays read-only and /tmp is a tmpfs.
        let spec = oci_spec(&args, "hvbench-g", false, &SandboxDevices::default());
        assert_eq!(spec["root"]["readonly"], true);
        assert_eq!(spec["mounts"][0]["destination"], "/tmp");
    }

    #[test]
    fn container_ids_are_plain_and_unique() {
        let pid = std::process::id();
        let a = container_id("gvisor-0");
        assert!(
            a.starts_with(&format!("hvbench-{pid}-")) && a.ends_with("-gvisor-0"),
            "{a}"
        );
        assert_ne!(a, container_id("gvisor-0"));
        assert!(container_id("a b/c").ends_with("-a_b_c"));
    }
}
