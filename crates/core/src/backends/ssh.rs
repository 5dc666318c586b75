//! `ssh`: an existing machine or VM over SSH, whatever hypervisor runs it (VMware, Xen,
//! VirtualBox, a cloud VM). hvbench cannot start that machine, but it can measure it with the
//! same agent file as every other backend.
//!
//! A guest is one SSH session: the agent is copied into a fresh temporary directory on the
//! target, run with the protocol on the session's stdin/stdout, and the directory is removed by
//! the remote shell when the agent exits, whether it was told to shut down, saw its input end
//! (the connection dropped), or failed to write a sample (the connection was cut mid-job).
//!
//! Host-key checking stays on: hvbench never adds `StrictHostKeyChecking=no`. `BatchMode=yes`
//! makes an unknown host key or a password prompt a clear failure instead of a hang; the user
//! adds options (`-o UserKnownHostsFile=...`) as needed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::open_console;
use super::{
    Availability, Backend, BackendConfig, BackendError, BackendOptions, GuestSpec, Launched,
};
use crate::agent::AgentBinary;
use crate::launch::host_tool::{run_bounded, version_line, which};
use crate::launch::spawn_piped;

/// Connection set-up (the probe's, and every later one's unless the user sets another).
const CONNECT_TIMEOUT: &str = "ConnectTimeout=5";
/// The probe's whole run.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// Copying the agent (5-15 MB) over a slow link.
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

/// Where to connect: `user@host[:port]` as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// `user@host` or `host`, as ssh takes it.
    pub destination: String,
    pub port: Option<u16>,
}

/// Parses `user@host[:port]`, `host`, `user@[::1]:2222`. Rejects what ssh would read as an
/// option or what is not one plain word.
pub fn parse_target(text: &str) -> Result<SshTarget, String> {
    let bad = |why: &str| format!("bad --ssh-target {text:?}: {why} (expected user@host[:port])");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    if text.starts_with('-') {
        return Err(bad("starts with '-'"));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains white space"));
    }
    let (user, hostport) = match text.rsplit_once('@') {
        Some(("", h)) => return Err(bad(&format!("empty user before @{h}"))),
        Some((u, h)) => (Some(u), h),
        None => (None, text),
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            ),
        }
    } else {
        match hostport.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(bad("an IPv6 address needs brackets: user@[::1]:22"))
            }
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(bad(&format!("port {p:?} is not 1-65535"))),
        },
    };
    let destination = match user {
        Some(u) => format!("{u}@{host}"),
        None => host.to_string(),
    };
    Ok(SshTarget { destination, port })
}

/// The `ssh` backend.
#[derive(Debug, Default)]
pub struct Ssh {
    target: Option<String>,
    identity: Option<PathBuf>,
    options: Vec<String>,
}

impl Ssh {
    pub fn new(opts: &BackendOptions) -> Ssh {
        Ssh {
            target: opts.ssh_target.clone(),
            identity: opts.ssh_identity.clone(),
            options: opts.ssh_options.clone(),
        }
    }
}

/// How to reach the target: everything needed to build ssh command lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub ssh: PathBuf,
    pub target: SshTarget,
    pub identity: Option<PathBuf>,
    /// The user's `-o` options.
    pub options: Vec<String>,
}

impl Connection {
    /// `ssh ... destination remote_command`. ssh takes the first value it sees for each
    /// option, so BatchMode comes first (a password prompt would hang a guest), then the
    /// user's options, then hvbench's defaults (`ConnectTimeout`), which the user may override.
    pub fn command_line(&self, defaults: &[&str], remote_command: &str) -> Vec<String> {
        let mut v = vec![
            self.ssh.display().to_string(),
            // No pty: the session is a clean byte stream. No escape character: a `~.` in the
            // stream must not end it.
            "-T".into(),
            "-e".into(),
            "none".into(),
            "-o".into(),
            "BatchMode=yes".into(),
        ];
        if let Some(p) = self.target.port {
            v.push("-p".into());
            v.push(p.to_string());
        }
        if let Some(i) = &self.identity {
            v.push("-i".into());
            v.push(i.display().to_string());
        }
        for o in self
            .options
            .iter()
            .map(String::as_str)
            .chain(defaults.iter().copied())
        {
            v.push("-o".into());
            v.push(o.to_string());
        }
        v.push("--".into());
        v.push(self.target.destination.clone());
        v.push(remote_command.to_string());
        v
    }
}

/// `sh -c '<script>'`: the remote login shell may not be POSIX (fish, tcsh), but it can start sh.
pub fn remote_sh(script: &str) -> String {
    format!("sh -c {}", sh_quote(script))
}

/// Quotes `s` as one POSIX shell word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Makes a private temporary directory, stores stdin as the agent there, checks its size, and
/// prints the directory; removes the directory again on any failure.
pub fn copy_script(size: u64) -> String {
    format!(
        "umask 077; d=$(mktemp -d \"${{TMPDIR:-/tmp}}/hvbench.XXXXXXXX\") || exit 1; \
         if cat > \"$d/hvbench-agent\" && chmod 700 \"$d/hvbench-agent\" \
         && [ $(($(wc -c < \"$d/hvbench-agent\"))) -eq {size} ]; \
         then echo \"$d\"; else rm -rf \"$d\"; echo 'hvbench: copying the agent failed' >&2; exit 1; fi"
    )
}

/// Runs the agent in `dir` and removes `dir` when it exits, for whatever reason.
pub fn run_script(dir: &str) -> String {
    format!(
        "d={}; \"$d/hvbench-agent\"; rc=$?; rm -rf \"$d\"; exit $rc",
        sh_quote(dir)
    )
}

/// A directory name printed by [`copy_script`]: absolute, one line, no quoting surprises.
fn valid_remote_dir(out: &str) -> Option<String> {
    let d = out.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let ok = d.starts_with('/')
        && d.contains("hvbench.")
        && d.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c));
    ok.then(|| d.to_string())
}

#[derive(Debug, Clone)]
struct Probed {
    availability: Availability,
    connection: Option<Connection>,
    uname: Option<String>,
    ssh_version: Option<String>,
}

/// Why a probe connection failed, and what most likely fixes it.
fn failure_hint(stderr: &str, target: &str) -> String {
    if stderr.contains("Host key verification failed") || stderr.contains("No ED25519 host key") {
        format!(
            "add the target's host key to known_hosts after checking its fingerprint (ssh {target} once), or point at a file with --ssh-option UserKnownHostsFile=FILE"
        )
    } else if stderr.contains("Permission denied") {
        "set up key authentication (ssh-copy-id, or --ssh-identity FILE): BatchMode allows no passwords".into()
    } else {
        format!("check that `ssh -o BatchMode=yes {target} true` works")
    }
}

impl Ssh {
    fn probed(&self) -> Probed {
        static CACHE: OnceLock<Mutex<BTreeMap<String, Probed>>> = OnceLock::new();
        let key = format!("{:?}", (&self.target, &self.identity, &self.options));
        let cache = CACHE.get_or_init(|| Mutex::new(BTreeMap::new()));
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| self.probe_uncached())
            .clone()
    }

    fn probe_uncached(&self) -> Probed {
        let unavailable = |reason: String, hint: String, connection| Probed {
            availability: Availability::Unavailable { reason, hint },
            connection,
            uname: None,
            ssh_version: None,
        };
        let Some(target_text) = &self.target else {
            return unavailable(
                "no --ssh-target given".into(),
                "hvbench run --backend ssh --ssh-target user@host[:port]".into(),
                None,
            );
        };
        let target = match parse_target(target_text) {
            Ok(t) => t,
            Err(e) => {
                return unavailable(
                    e,
                    "hvbench run --backend ssh --ssh-target user@host[:port]".into(),
                    None,
                )
            }
        };
        let Some(ssh) = which("ssh") else {
            return unavailable(
                "ssh not found".into(),
                "apt-get install openssh-client".into(),
                None,
            );
        };
        let connection = Connection {
            ssh,
            target,
            identity: self.identity.clone(),
            options: self.options.clone(),
        };
        let ssh_version = version_line(&connection.ssh, &["-V"]);
        let argv = connection.command_line(
            &[CONNECT_TIMEOUT],
            &remote_sh("uname -a && uname -s && uname -m"),
        );
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let done = match run_bounded(&mut cmd, Stdio::null(), PROBE_TIMEOUT) {
            Ok(d) => d,
            Err(e) => {
                return unavailable(
                    e.to_string(),
                    failure_hint("", target_text),
                    Some(connection),
                )
            }
        };
        if !done.status.success() {
            return unavailable(
                format!("ssh to {target_text} failed: {}", done.complaint()),
                failure_hint(&done.stderr, target_text),
                Some(connection),
            );
        }
        let lines: Vec<&str> = done.stdout.lines().map(str::trim).collect();
        let (uname, os, machine) = match lines[..] {
            [.., a, s, m] => (a.to_string(), s, m),
            _ => {
                return unavailable(
                    format!(
                        "unexpected answer to uname from {target_text}: {:?}",
                        done.stdout
                    ),
                    failure_hint("", target_text),
                    Some(connection),
                )
            }
        };
        let arch = std::env::consts::ARCH;
        if os != "Linux" || machine != arch {
            return unavailable(
                format!("{target_text} is {os} {machine}; the agent is a Linux {arch} executable"),
                format!("point --ssh-target at a Linux {arch} machine"),
                Some(connection),
            );
        }
        Probed {
            availability: Availability::Available {
                detail: format!(
                    "{target_text}: {uname} (connected in {} ms)",
                    done.elapsed.as_millis()
                ),
            },
            connection: Some(connection),
            uname: Some(uname),
            ssh_version,
        }
    }
}

/// Copies the agent into a new directory on the target; returns the directory.
fn copy_agent(conn: &Connection, agent: &AgentBinary) -> Result<String, BackendError> {
    let file = std::fs::File::open(&agent.path).map_err(|e| BackendError::Spawn {
        what: agent.path.display().to_string(),
        source: e,
    })?;
    let argv = conn.command_line(&[CONNECT_TIMEOUT], &remote_sh(&copy_script(agent.size)));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let done = run_bounded(&mut cmd, Stdio::from(file), COPY_TIMEOUT)
        .map_err(|e| BackendError::Setup(format!("copying the agent over ssh: {e}")))?;
    if !done.status.success() {
        return Err(BackendError::Setup(format!(
            "copying the agent to {} failed: {}",
            conn.target.destination,
            done.complaint()
        )));
    }
    valid_remote_dir(&done.stdout).ok_or_else(|| {
        BackendError::Setup(format!(
            "copying the agent: unexpected answer {:?}",
            done.stdout
        ))
    })
}

impl Backend for Ssh {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn technique(&self) -> &'static str {
        "an existing machine or VM over SSH"
    }

    fn probe(&self, _agent: &AgentBinary) -> Availability {
        self.probed().availability
    }

    /// The agent is copied before it can say hello.
    fn hello_timeout(&self) -> Duration {
        COPY_TIMEOUT + Duration::from_secs(30)
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        let probed = self.probed();
        let conn = match (&probed.availability, probed.connection) {
            (Availability::Available { .. }, Some(c)) => c,
            (Availability::Unavailable { reason, hint }, _) => {
                return Err(BackendError::Unavailable {
                    backend: self.name().into(),
                    reason: reason.clone(),
                    hint: hint.clone(),
                })
            }
            _ => return Err(BackendError::Setup("ssh probe found no connection".into())),
        };
        let dir = copy_agent(&conn, &spec.agent)?;
        let console = spec.workdir.join("ssh.stderr");
        let stderr = open_console(&console)?;
        let argv = conn.command_line(&[CONNECT_TIMEOUT], &remote_sh(&run_script(&dir)));
        let piped = match spawn_piped(Command::new(&argv[0]).args(&argv[1..]), stderr) {
            Ok(p) => p,
            Err(e) => {
                // Best effort: the copy is useless without a session to run it.
                let rm = conn.command_line(
                    &[CONNECT_TIMEOUT],
                    &remote_sh(&format!("rm -rf {}", sh_quote(&dir))),
                );
                let _ = run_bounded(
                    Command::new(&rm[0]).args(&rm[1..]),
                    Stdio::null(),
                    Duration::from_secs(15),
                );
                return Err(BackendError::Spawn {
                    what: argv[0].clone(),
                    source: e,
                });
            }
        };
        let mut versions = BTreeMap::new();
        if let Some(v) = probed.ssh_version {
            versions.insert("ssh".to_string(), v);
        }
        if let Some(u) = probed.uname {
            versions.insert("remote_uname".to_string(), u);
        }
        let settings = BTreeMap::from([
            (
                "target".to_string(),
                self.target.clone().unwrap_or_default(),
            ),
            ("remote_dir".to_string(), dir),
            (
                "limits".to_string(),
                "whatever the target machine has".to_string(),
            ),
            (
                "host_cpu".to_string(),
                "the local ssh client only: the target's CPU is not metered".to_string(),
            ),
        ]);
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
            attached: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn targets_parse_with_user_port_and_ipv6() {
        let t = parse_target("root@vm.example:2222").unwrap();
        assert_eq!(
            (t.destination.as_str(), t.port),
            ("root@vm.example", Some(2222))
        );
        let t = parse_target("vm.example").unwrap();
        assert_eq!((t.destination.as_str(), t.port), ("vm.example", None));
        let t = parse_target("me@[::1]:22").unwrap();
        assert_eq!((t.destination.as_str(), t.port), ("me@::1", Some(22)));
        let t = parse_target("[fe80::1]").unwrap();
        assert_eq!((t.destination.as_str(), t.port), ("fe80::1", None));
        for bad in [
            "",
            "-oProxyCommand=evil",
            "root@",
            "@host",
            "host:0",
            "host:99999",
            "host:ssh",
            "a b@host",
            "::1",
            "[::1",
        ] {
            assert!(parse_target(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    fn conn() -> Connection {
        Connection {
            ssh: PathBuf::from("/usr/bin/ssh"),
            target: parse_target("root@10.0.0.5:2200").unwrap(),
            identity: Some(PathBuf::from("/k/id")),
            options: vec!["UserKnownHostsFile=/k/known".into()],
        }
    }

    #[test]
    fn command_line_keeps_host_key_checking_and_batch_mode_first_then_user_options() {
        let v = conn().command_line(&["ConnectTimeout=5"], "true");
        assert_eq!(v[0], "/usr/bin/ssh");
        assert!(
            !v.iter().any(|a| a.contains("StrictHostKeyChecking")),
            "{v:?}"
        );
        let pos = |s: &str| v.iter().position(|a| a == s).unwrap();
        // BatchMode cannot be overridden; the user's options win over hvbench's defaults.
        assert!(pos("BatchMode=yes") < pos("UserKnownHostsFile=/k/known"));
        assert!(pos("UserKnownHostsFile=/k/known") < pos("ConnectTimeout=5"));
        assert_eq!(v[pos("-p") + 1], "2200");
        assert_eq!(v[pos("-i") + 1], "/k/id");
        assert_eq!(v[pos("-e") + 1], "none");
        assert!(v.contains(&"-T".to_string()));
        assert_eq!(v[v.len() - 3..], ["--", "root@10.0.0.5", "true"]);
    }

    #[test]
    fn scripts_quote_and_clean_up() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(remote_sh("echo 'a'"), r"sh -c 'echo '\''a'\'''");
        let run = run_script("/tmp/hvbench.AbC123");
        assert!(run.starts_with("d='/tmp/hvbench.AbC123'; "), "{run}");
        assert!(run.contains("rm -rf \"$d\""), "{run}");
        let copy = copy_script(1234);
        assert!(copy.contains("-eq 1234"), "{copy}");
        assert!(copy.contains("mktemp -d"), "{copy}");
    }

    #[test]
    fn scripts_work_in_a_local_shell() {
        let src = std::env::temp_dir().join(format!("hvbench-ssh-unit-{}", std::process::id()));
        std::fs::write(&src, b"#!/bin/sh\necho agent-ran\n").unwrap();
        let tmp = crate::workdir::WorkDir::new("ssh-unit").unwrap();
        let out = Command::new("sh")
            .args(["-c", &copy_script(25)])
            .env("TMPDIR", tmp.path())
            .stdin(std::fs::File::open(&src).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let dir = valid_remote_dir(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert!(Path::new(&dir).join("hvbench-agent").is_file());
        let out = Command::new("sh")
            .args(["-c", &run_script(&dir)])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "agent-ran\n");
        assert!(!Path::new(&dir).exists(), "the run removes the directory");
        // A wrong size is refused and leaves nothing behind.
        let out = Command::new("sh")
            .args(["-c", &copy_script(26)])
            .env("TMPDIR", tmp.path())
            .stdin(std::fs::File::open(&src).unwrap())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        let _ = std::fs::remove_file(&src);
    }

    #[test]
    fn remote_dir_answers_are_checked() {
        assert_eq!(
            valid_remote_dir("motd\n/tmp/hvbench.x1Y2\n").as_deref(),
            Some("/tmp/hvbench.x1Y2")
        );
        assert!(valid_remote_dir("/tmp/hvbench.x'; rm -rf /").is_none());
        assert!(valid_remote_dir("tmp/hvbench.x").is_none());
        assert!(valid_remote_dir("").is_none());
    }

    #[test]
    fn missing_target_is_unavailable_with_the_flag_to_use() {
        let a = Ssh::new(&BackendOptions::default()).probed().availability;
        let Availability::Unavailable { reason, hint } = a else {
            panic!("{a:?}")
        };
        assert_eq!(reason, "no --ssh-target given");
        assert!(hint.contains("--ssh-target user@host[:port]"), "{hint}");
    }
}
