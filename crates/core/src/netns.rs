//! Network namespaces hvbench creates for guests' networks (root only).
//!
//! Every address hvbench configures lives on loopback or inside a namespace it created, so a
//! benchmark never touches the host's own interfaces, routes or firewall. A namespace is named
//! `hvb<pid>-<label>` and deleted when its owner is dropped; namespaces of an hvbench process
//! that no longer exists (killed with SIGKILL) are swept at the next creation.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The guest side of every hvbench network (each guest has namespaces of its own, so the same
/// small subnet serves them all).
pub const GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The host side.
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const PREFIX: u8 = 24;
/// The tap device QEMU and UML guests are attached to.
pub const TAP_NAME: &str = "hvbtap0";

const RUN_NETNS: &str = "/run/netns";

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `hvb<pid>-<label>` with its loopback up.
    pub fn create(label: &str) -> Result<NetNs, String> {
        require_root()?;
        sweep_stale();
        let clean: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let name = format!("hvb{}-{clean}", std::process::id());
        // A namespace left by this very process (a relaunch under the same label) goes first.
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        let ns = NetNs { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file, for `setns` and OCI specs.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(RUN_NETNS).join(&self.name)
    }

    /// The argument prefix that runs a program inside the namespace.
    pub fn enter_prefix(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            format!("--net={}", self.path().display()),
            "--".into(),
        ]
    }

    /// Runs a command inside the namespace, to completion.
    pub fn exec(&self, argv: &[&str]) -> Result<(), String> {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(argv);
        ip(&full)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A guest namespace and a host-side namespace joined by a veth pair (namespace and gVisor
/// guests): the guest end is [`GUEST_ADDR`], the host end [`HOST_ADDR`].
#[derive(Debug)]
pub struct VethPair {
    pub guest: NetNs,
    pub host: NetNs,
}

impl VethPair {
    pub fn create(label: &str) -> Result<VethPair, String> {
        let guest = NetNs::create(&format!("{label}-g"))?;
        let host = NetNs::create(&format!("{label}-h"))?;
        let cidr = |a: Ipv4Addr| format!("{a}/{PREFIX}");
        guest.exec(&[
            "ip",
            "link",
            "add",
            "hvbg0",
            "type",
            "veth",
            "peer",
            "name",
            "hvbh0",
            "netns",
            host.name(),
        ])?;
        guest.exec(&["ip", "addr", "add", &cidr(GUEST_ADDR), "dev", "hvbg0"])?;
        guest.exec(&["ip", "link", "set", "hvbg0", "up"])?;
        host.exec(&["ip", "addr", "add", &cidr(HOST_ADDR), "dev", "hvbh0"])?;
        host.exec(&["ip", "link", "set", "hvbh0", "up"])?;
        Ok(VethPair { guest, host })
    }
}

/// A namespace holding a tap device with [`HOST_ADDR`], for a QEMU or UML guest started
/// inside it; the guest configures [`GUEST_ADDR`] on its NIC.
pub fn tap_namespace(label: &str) -> Result<NetNs, String> {
    let ns = NetNs::create(label)?;
    ns.exec(&["ip", "tuntap", "add", "dev", TAP_NAME, "mode", "tap"])?;
    ns.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{HOST_ADDR}/{PREFIX}"),
        "dev",
        TAP_NAME,
    ])?;
    ns.exec(&["ip", "link", "set", TAP_NAME, "up"])?;
    Ok(ns)
}

fn require_root() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("a guest network in its own namespace needs root (network namespaces, veth and tap devices); run as root, or use --net user with QEMU".into());
    }
    Ok(())
}

/// Runs `ip ARGS`; the error carries its stderr and names the package when `ip` is missing.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "the `ip` command is missing: apt-get install iproute2".to_string()
            } else {
                format!("cannot run ip: {e}")
            }
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes namespaces of hvbench processes that no longer exist.
pub fn sweep_stale() {
    let Ok(rd) = std::fs::read_dir(RUN_NETNS) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if let Some(pid) = owner_pid(&name) {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }
}

/// The pid in `hvb<pid>-<label>`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("hvb")?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_names() {
        assert_eq!(owner_pid("hvb123-qemu-tcg-0"), Some(123));
        assert_eq!(owner_pid("hvbx-1"), None);
        assert_eq!(owner_pid("other"), None);
    }

    #[test]
    fn a_veth_pair_connects_two_namespaces() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || ip(&["-V"]).is_err() {
            eprintln!("skipped: needs root and iproute2");
            return;
        }
        let pair = VethPair::create("unit").unwrap();
        let g = pair.guest.path();
        assert!(g.exists());
        pair.host
            .exec(&["ping", "-c", "1", "-W", "2", &GUEST_ADDR.to_string()])
            .or_else(|e| {
                if e.contains("No such file") {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .unwrap();
        drop(pair);
        assert!(!g.exists(), "the namespace is deleted with its owner");
    }
}
