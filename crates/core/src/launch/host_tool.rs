//! Host tools that backends drive (`unshare`, `bwrap`, `runsc`, `ssh`, `qemu-system-x86_64`):
//! finding them on PATH, reading their versions, and running short commands under a time bound.
//!
//! Probes must never hang (a gVisor sandbox on a /dev/kvm that cannot run guests waits forever,
//! an SSH server may never answer), so every short command runs in a process group of its own
//! and the whole group is killed when its time is up, or when hvbench dies.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{kill_and_reap, spawn_dying_with_caller};

/// The first executable file named `program` in PATH (or in the usual sbin directories, which
/// PATH of an unprivileged user often lacks).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether hvbench runs as root (decides between privileged and user-namespace set-ups).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command that ended within its time bound.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    /// stderr (or stdout when stderr is empty), trimmed to its last lines, for error messages.
    pub fn complaint(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let text = last_lines(text, 6);
        if text.is_empty() {
            format!("exited with {}", self.status)
        } else {
            text
        }
    }
}

/// Why a bounded command did not end on its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {timeout:?} and was killed{}", tail(.stderr))]
    TimedOut {
        program: String,
        timeout: Duration,
        stderr: String,
    },
}

fn tail(stderr: &str) -> String {
    let t = last_lines(stderr, 6);
    if t.is_empty() {
        String::new()
    } else {
        format!(" ({t})")
    }
}

/// The last `n` non-empty lines of `text`, joined by newlines.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` with `stdin` and captured stdout/stderr, in its own process group, for at most
/// `timeout`; on expiry the whole group is killed and reaped.
pub fn run_bounded(
    cmd: &mut Command,
    stdin: Stdio,
    timeout: Duration,
) -> Result<Finished, RunError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let t0 = Instant::now();
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_dying_with_caller(cmd).map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    let (tx, rx) = mpsc::channel();
    for (which, stream) in [
        (
            0,
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
        (
            1,
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
    ] {
        let tx = tx.clone();
        if let Some(mut s) = stream {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                let _ = tx.send((which, buf));
            });
        }
    }
    drop(tx);
    let deadline = t0 + timeout;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        let now = Instant::now();
        if now >= deadline {
            // The child is not reaped yet, so its process group id cannot have been reused.
            kill_and_reap(&mut child);
            break None;
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(25));
    };
    // A grandchild that escaped the group could hold the pipes open: wait briefly, not forever.
    let mut out = [Vec::new(), Vec::new()];
    let until = Instant::now() + Duration::from_millis(500);
    for _ in 0..2 {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((which, buf)) => out[which] = buf,
            Err(_) => break,
        }
    }
    let [stdout, stderr] = out.map(|b| String::from_utf8_lossy(&b).into_owned());
    match status {
        Some(status) => Ok(Finished {
            status,
            stdout,
            stderr,
            elapsed: t0.elapsed(),
        }),
        None => Err(RunError::TimedOut {
            program,
            timeout,
            stderr,
        }),
    }
}

/// The first line a tool prints for `args` (on stdout or stderr), bounded to 5 s.
pub fn version_line(program: &Path, args: &[&str]) -> Option<String> {
    let done = run_bounded(
        Command::new(program).args(args),
        Stdio::null(),
        Duration::from_secs(5),
    )
    .ok()?;
    let text = if done.stdout.trim().is_empty() {
        done.stderr
    } else {
        done.stdout
    };
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hanging_command_is_killed_with_its_children() {
        let t0 = Instant::now();
        let e = run_bounded(
            Command::new("sh").args(["-c", "echo $$ >&2; sleep 30 & sleep 30"]),
            Stdio::null(),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(3));
        let RunError::TimedOut { stderr, .. } = e else {
            panic!("{e}")
        };
        let pgid: u32 = stderr.trim().parse().unwrap();
        // The background sleep was in the group and is gone too (or a zombie awaiting init).
        std::thread::sleep(Duration::from_millis(100));
        for p in std::fs::read_dir("/proc").unwrap().flatten() {
            let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let fields: Vec<&str> = rest.split(' ').collect();
            if fields.get(2) == Some(&pgid.to_string().as_str()) {
                assert_eq!(fields[0], "Z", "left running: {stat}");
            }
        }
    }

    #[test]
    fn output_and_status_are_captured() {
        let done = run_bounded(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Stdio::null(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(done.stdout, "out\n");
        assert_eq!(done.stderr, "err\n");
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.complaint(), "err");
    }

    #[test]
    fn last_lines_skips_blank_lines() {
        assert_eq!(last_lines("a\n\nb\nc\n\n", 2), "b\nc");
        assert_eq!(last_lines("", 2), "");
    }
}
