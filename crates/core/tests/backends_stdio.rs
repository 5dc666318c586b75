//! One end-to-end test, written once and run on every backend that can start here (the table
//! in `every_backend!` at the bottom): start a guest, check its hello, run a job, shut down,
//! and prove that no process of the guest is left. A second body kills a guest mid-job and
//! checks that the host notices at once instead of hanging; a third (ignored: a measurement)
//! prints launch-to-hello times.
//!
//! The backends whose agent talks on stdin/stdout (native, namespace, gvisor, ssh) are this
//! file's reason to be; the kernel backends join the same table so that none is second-class.
//! A backend that is unavailable here is skipped with its reason, except under `CI=true`, where
//! the backends CI installs (namespaces, gVisor, User-Mode Linux, a local sshd) must run.
//!
//! The `ssh` backend is tested against an sshd this test starts on 127.0.0.1 with throw-away
//! keys; host-key checking stays on, through a known_hosts file written for that sshd.
//!
//! The tests run one at a time (a lock): "no process of this guest remains" is checked by a
//! marker variable in the environment of everything the test process starts, which only works
//! when one guest exists at a time.
//!
//! ```text
//! cargo test -p hvbench-core --test backends_stdio
//! cargo test -p hvbench-core --test backends_stdio -- --ignored start_time --nocapture
//! ```

mod support;
use support::agent;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hvbench_core::backends::gvisor::Gvisor;
use hvbench_core::backends::namespace::{Namespace, Tool};
use hvbench_core::backends::native::Native;
use hvbench_core::backends::qemu::QemuTcg;
use hvbench_core::backends::ssh::Ssh;
use hvbench_core::backends::uml::Uml;
use hvbench_core::backends::{Availability, Backend, BackendOptions, GuestSpec};
use hvbench_core::guest::{Guest, GuestError, JobEnd};
use hvbench_core::placement::{self, PinPolicy, Placement};
use hvbench_core::workdir::WorkDir;
use hvbench_protocol::Job;

/// Set in this process's environment, so every process a backend starts here inherits it.
const MARKER_VAR: &str = "HVBENCH_TEST_MARKER";

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// One guest at a time (see the module docs). A failed test must not block the others.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The marker value; sets the variable on first use (under the lock, before any spawn).
fn marker() -> &'static str {
    static MARKER: OnceLock<String> = OnceLock::new();
    MARKER.get_or_init(|| {
        let m = format!("backends-stdio-{}", std::process::id());
        std::env::set_var(MARKER_VAR, &m);
        m
    })
}

/// A backend to test, and what it needs kept alive meanwhile.
struct Subject {
    backend: Box<dyn Backend>,
    sshd: Option<Sshd>,
    /// The agent is init of a guest kernel (qemu, uml), not a process on some kernel.
    guest_kernel: bool,
}

impl Subject {
    fn plain(backend: impl Backend + 'static) -> Result<Subject, String> {
        Ok(Subject {
            backend: Box::new(backend),
            sshd: None,
            guest_kernel: false,
        })
    }

    fn kernel(backend: impl Backend + 'static) -> Result<Subject, String> {
        Ok(Subject {
            guest_kernel: true,
            ..Subject::plain(backend)?
        })
    }
}

fn native() -> Result<Subject, String> {
    Subject::plain(Native)
}

fn namespace() -> Result<Subject, String> {
    Subject::plain(Namespace::new())
}

fn namespace_bwrap() -> Result<Subject, String> {
    Subject::plain(Namespace::with_tool(Tool::Bwrap))
}

fn gvisor() -> Result<Subject, String> {
    Subject::plain(Gvisor::new(&BackendOptions::default()))
}

fn uml() -> Result<Subject, String> {
    Subject::kernel(Uml::new())
}

/// Debian 12's own UML 6.1, which boots only where the host's XSTATE fits its buffer (not on
/// CPUs with AMX).
fn uml_debian12() -> Result<Subject, String> {
    Subject::kernel(Uml::on(std::path::Path::new("/usr/bin/linux.uml")))
}

fn qemu_tcg() -> Result<Subject, String> {
    Subject::kernel(QemuTcg)
}

fn gvisor_systrap() -> Result<Subject, String> {
    Subject::plain(Gvisor::new(&BackendOptions {
        gvisor_platform: Some("systrap".into()),
        ..Default::default()
    }))
}

fn gvisor_ptrace() -> Result<Subject, String> {
    Subject::plain(Gvisor::new(&BackendOptions {
        gvisor_platform: Some("ptrace".into()),
        ..Default::default()
    }))
}

fn ssh() -> Result<Subject, String> {
    let sshd = Sshd::start()?;
    Ok(Subject {
        backend: Box::new(Ssh::new(&sshd.options)),
        sshd: Some(sshd),
        guest_kernel: false,
    })
}

/// Prepares `make`'s backend, or explains why it cannot run here (a failure under CI when
/// `required`).
fn prepare(name: &str, make: fn() -> Result<Subject, String>, required: bool) -> Option<Subject> {
    let skip = |why: String| {
        if required && ci() {
            panic!("{name} must run in CI, but: {why}");
        }
        eprintln!("skipping {name}: {why}");
        None
    };
    let subject = match make() {
        Ok(s) => s,
        Err(why) => return skip(why),
    };
    let agent = agent();
    let t0 = Instant::now();
    let availability = subject.backend.probe(&agent);
    eprintln!("{name}: probe {availability:?} in {:?}", t0.elapsed());
    if !availability.is_available() {
        return skip(format!("{availability:?}"));
    }
    Some(subject)
}

/// A guest directory inside a private (mode 0700) run directory, as scenarios make them: a
/// sandbox that drops privileges must not need to reach it (runsc do's did, and failed).
fn spec(wd: &WorkDir, label: &str) -> GuestSpec {
    let workdir = wd.path().join(label);
    std::fs::create_dir_all(&workdir).unwrap();
    GuestSpec {
        vcpus: 1,
        memory_mib: 256,
        kernel: None,
        agent: agent(),
        workdir,
        label: label.into(),
        devices: Default::default(),
    }
}

fn getppid_job(target_s: f64, reps: u32) -> Job {
    Job {
        id: 0,
        workload: "sys.getppid".into(),
        params: BTreeMap::new(),
        iterations: None,
        target_s,
        warmup: 0,
        reps,
        copies: 1,
    }
}

/// The end-to-end body every backend runs.
fn end_to_end(name: &str, make: fn() -> Result<Subject, String>, required: bool) {
    let _one_at_a_time = serial();
    marker();
    let Some(subject) = prepare(name, make, required) else {
        return;
    };
    let backend = &*subject.backend;
    let wd = WorkDir::new(name).unwrap();
    let spec = spec(&wd, &format!("{name}-e2e"));
    let mut guest = Guest::start(backend, &spec, backend.hello_timeout())
        .unwrap_or_else(|e| panic!("{name}: guest did not start: {e}"));
    eprintln!("{name}: launch to hello {:?}", guest.boot);
    eprintln!("{name}: config {:?}", guest.config);
    assert_eq!(guest.hello.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(guest.hello.cpus >= 1, "{:?}", guest.hello);
    // Init of a guest kernel only where there is a guest kernel: in a PID namespace the agent
    // is PID 1 too, and must not take itself for init (it would power off the host).
    assert_eq!(
        guest.hello.is_init, subject.guest_kernel,
        "{:?}",
        guest.hello
    );
    assert!(!guest.config.command_line.is_empty());

    let running = GuestProcesses::snapshot(&guest, &wd, &subject);
    assert!(
        !running.marked.is_empty(),
        "{name}: the marker should be on the guest's host processes"
    );

    let mut samples = Vec::new();
    let end = guest
        .run_job(getppid_job(0.02, 2), Duration::from_secs(60), |s| {
            samples.push(s)
        })
        .unwrap_or_else(|e| panic!("{name}: job failed: {e}"));
    assert!(matches!(end, JobEnd::Done { .. }), "{name}: {end:?}");
    assert_eq!(samples.len(), 2, "{name}: {samples:?}");
    for s in &samples {
        assert!(!s.msg.warmup);
        assert!(s.msg.value.is_finite() && s.msg.value > 0.0, "{s:?}");
        assert!(s.msg.iterations > 0 && s.msg.elapsed_ns > 0, "{s:?}");
    }

    guest.shutdown(Duration::from_secs(10));
    running.assert_all_gone(name);
}

/// A guest whose host processes die mid-job makes `run_job` fail promptly, not hang.
fn killed_mid_job(name: &str, make: fn() -> Result<Subject, String>, required: bool) {
    let _one_at_a_time = serial();
    marker();
    let Some(subject) = prepare(name, make, required) else {
        return;
    };
    let backend = &*subject.backend;
    let wd = WorkDir::new(name).unwrap();
    let spec = spec(&wd, &format!("{name}-kill"));
    let mut guest = Guest::start(backend, &spec, backend.hello_timeout())
        .unwrap_or_else(|e| panic!("{name}: guest did not start: {e}"));
    let running = GuestProcesses::snapshot(&guest, &wd, &subject);
    let pids = guest.host_pids();
    let mut killed_at = None;
    let t0 = Instant::now();
    let result = guest.run_job(getppid_job(0.2, 50), Duration::from_secs(60), |_| {
        if killed_at.is_none() {
            for &pid in &pids {
                // SAFETY: kill has no memory-safety preconditions; -pid is the process group
                // the backend started this guest's process in.
                unsafe {
                    libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
                }
            }
            killed_at = Some(Instant::now());
        }
    });
    let killed_at = killed_at.unwrap_or_else(|| panic!("{name}: no sample arrived: {result:?}"));
    let noticed = killed_at.elapsed();
    eprintln!("{name}: killed mid-job, noticed after {noticed:?}");
    assert!(
        matches!(result, Err(GuestError::Closed { .. })),
        "{name}: {result:?}"
    );
    assert!(
        noticed < Duration::from_secs(5) && t0.elapsed() < Duration::from_secs(30),
        "{name}: took {noticed:?} to notice"
    );
    drop(guest);
    running.assert_all_gone(name);
}

/// Every thread of the processes below `roots`, with the CPUs the kernel lets it run on.
fn threads_affinity(roots: &[u32]) -> Vec<(u32, String, Vec<u32>)> {
    let mut v = Vec::new();
    for pid in placement::process_tree(roots) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(tid) = t.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if let Some(cpus) = placement::allowed_cpus(pid, tid) {
                v.push((tid, comm.trim_end().to_string(), cpus));
            }
        }
    }
    v
}

/// A pinned guest's threads run where they were pinned, as the kernel reports it, also those
/// created after the pinning (the processes of a job, UML's guest address spaces, gVisor's
/// sandbox threads).
fn pinned(name: &str, make: fn() -> Result<Subject, String>, required: bool) {
    let _one_at_a_time = serial();
    marker();
    let Some(subject) = prepare(name, make, required) else {
        return;
    };
    let backend = &*subject.backend;
    let wd = WorkDir::new(name).unwrap();
    let mut guest = Guest::start(
        backend,
        &spec(&wd, &format!("{name}-pin")),
        backend.hello_timeout(),
    )
    .unwrap_or_else(|e| panic!("{name}: guest did not start: {e}"));
    let me = std::process::id();
    let allowed = placement::allowed_cpus(me, me).unwrap();
    let cpu = *allowed.last().unwrap();
    let policy = PinPolicy {
        placement: Placement::Pack,
        cpus: vec![cpu],
        backends: Vec::new(),
    };
    guest
        .pin_in_slot(&policy, 0, 1)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let recorded = guest.config.settings["pinning"].clone();
    eprintln!("{name}: {recorded}");
    if name == "ssh" {
        assert!(recorded.contains("another machine"), "{recorded}");
        guest.shutdown(Duration::from_secs(10));
        return;
    }
    guest
        .run_job(getppid_job(0.02, 2), Duration::from_secs(60), |_| {})
        .unwrap_or_else(|e| panic!("{name}: job failed: {e}"));
    let threads = threads_affinity(&guest.host_pids());
    assert!(!threads.is_empty(), "{name}");
    for (tid, comm, cpus) in &threads {
        assert_eq!(cpus, &vec![cpu], "{name}: thread {tid} ({comm})");
    }
    guest.shutdown(Duration::from_secs(10));
}

/// QEMU's vCPU threads are pinned one to one, in the order of the guest's CPUs, and its other
/// threads on the guest's whole set.
#[test]
fn qemu_vcpu_threads_are_pinned_one_to_one() {
    let _one_at_a_time = serial();
    marker();
    let Some(subject) = prepare("qemu_tcg", qemu_tcg, false) else {
        return;
    };
    let me = std::process::id();
    let allowed = placement::allowed_cpus(me, me).unwrap();
    if allowed.len() < 2 {
        eprintln!("skipping: one CPU allowed here");
        return;
    }
    // Reversed, so that a one-to-one pinning cannot pass by accident of numbering.
    let cpus = vec![allowed[1], allowed[0]];
    let wd = WorkDir::new("qemu").unwrap();
    let mut s = spec(&wd, "qemu-pin2");
    s.vcpus = 2;
    let backend = &*subject.backend;
    let mut guest = Guest::start(backend, &s, backend.hello_timeout())
        .unwrap_or_else(|e| panic!("qemu: guest did not start: {e}"));
    guest.pin(&cpus).unwrap();
    let threads = threads_affinity(&guest.host_pids());
    let vcpu = |i: usize| {
        threads
            .iter()
            .find(|(_, comm, _)| placement::vcpu_index(comm) == Some(i))
            .unwrap_or_else(|| panic!("no vCPU thread {i}: {threads:?}"))
            .2
            .clone()
    };
    assert_eq!(vcpu(0), vec![cpus[0]]);
    assert_eq!(vcpu(1), vec![cpus[1]]);
    let mut both = cpus.clone();
    both.sort();
    for (tid, comm, set) in threads
        .iter()
        .filter(|t| placement::vcpu_index(&t.1).is_none())
    {
        assert_eq!(set, &both, "thread {tid} ({comm})");
    }
    guest.shutdown(Duration::from_secs(10));
}

/// Launch-to-hello time over a few guests (DESIGN.md: namespace and gvisor under 0.3 s).
fn start_time(name: &str, make: fn() -> Result<Subject, String>, required: bool) {
    const GUESTS: usize = 7;
    let _one_at_a_time = serial();
    marker();
    let Some(subject) = prepare(name, make, required) else {
        return;
    };
    let backend = &*subject.backend;
    let mut times = Vec::new();
    for i in 0..GUESTS {
        let wd = WorkDir::new(name).unwrap();
        let guest = Guest::start(
            backend,
            &spec(&wd, &format!("{name}-start-{i}")),
            backend.hello_timeout(),
        )
        .unwrap_or_else(|e| panic!("{name}: guest did not start: {e}"));
        times.push(guest.boot);
        guest.shutdown(Duration::from_secs(10));
    }
    times.sort();
    eprintln!(
        "{name}: launch to hello over {GUESTS} guests: median {:?}, min {:?}, max {:?} (agent {} bytes)",
        times[GUESTS / 2],
        times[0],
        times[GUESTS - 1],
        agent().size
    );
}

/// A process as /proc shows it.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    ppid: u32,
    /// Start time in clock ticks since boot: with the PID, it names one process for certain.
    start: u64,
    zombie: bool,
    cmdline: String,
    marked: bool,
}

fn processes() -> Vec<Proc> {
    let needle = format!("{MARKER_VAR}={}", marker());
    let mut all = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        if f.len() < 20 {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let marked = std::fs::read(e.path().join("environ"))
            .map(|b| b.split(|&c| c == 0).any(|v| v == needle.as_bytes()))
            .unwrap_or(false);
        all.push(Proc {
            pid,
            ppid: f[1].parse().unwrap_or(0),
            start: f[19].parse().unwrap_or(0),
            zombie: f[0] == "Z" || f[0] == "X",
            cmdline,
            marked,
        });
    }
    all
}

fn descendants(all: &[Proc], roots: &[u32]) -> BTreeSet<(u32, u64)> {
    let mut found = BTreeSet::new();
    let mut frontier: Vec<u32> = roots.to_vec();
    while let Some(p) = frontier.pop() {
        for c in all.iter().filter(|c| c.ppid == p && !c.zombie) {
            if found.insert((c.pid, c.start)) {
                frontier.push(c.pid);
            }
        }
    }
    found
}

/// Everything that makes one guest on this host, seen while it runs.
struct GuestProcesses {
    /// The guest's host processes and all their descendants, and every marked process.
    tracked: BTreeSet<(u32, u64)>,
    marked: Vec<u32>,
    /// Strings that only this guest's processes have on their command line.
    needles: Vec<String>,
    /// The guest's label: cgroups named after it (hvbench's meter, or a runtime's own) must go.
    label: String,
    /// For ssh: the sshd whose session processes must end, and the remote directory.
    sshd_pid: Option<u32>,
    remote_dir: Option<PathBuf>,
}

impl GuestProcesses {
    fn snapshot(guest: &Guest, wd: &WorkDir, subject: &Subject) -> GuestProcesses {
        let all = processes();
        let roots = guest.host_pids();
        let mut tracked = descendants(&all, &roots);
        for p in all.iter().filter(|p| roots.contains(&p.pid) || p.marked) {
            tracked.insert((p.pid, p.start));
        }
        let marked = all.iter().filter(|p| p.marked).map(|p| p.pid).collect();
        let mut needles = vec![wd.path().display().to_string()];
        let remote_dir = guest.config.settings.get("remote_dir").map(PathBuf::from);
        if let Some(d) = &remote_dir {
            needles.push(d.display().to_string());
        }
        let sshd_pid = subject.sshd.as_ref().map(|s| s.child.id());
        if let Some(sshd) = sshd_pid {
            tracked.extend(descendants(&all, &[sshd]));
        }
        GuestProcesses {
            tracked,
            marked,
            needles,
            label: guest.label.clone(),
            sshd_pid,
            remote_dir,
        }
    }

    /// What of the guest is still there.
    fn leftovers(&self) -> Vec<String> {
        let all = processes();
        let mut left = Vec::new();
        for p in all
            .iter()
            .filter(|p| !p.zombie && p.pid != std::process::id())
        {
            let why = if self.tracked.contains(&(p.pid, p.start)) {
                "was part of the guest"
            } else if p.marked {
                "carries the marker"
            } else if self.needles.iter().any(|n| p.cmdline.contains(n.as_str())) {
                "names the guest's directory"
            } else if self.sshd_pid.is_some_and(|s| p.ppid == s) {
                "is an sshd session"
            } else {
                continue;
            };
            left.push(format!("{} ({why}): {}", p.pid, p.cmdline));
        }
        left.extend(cgroups_of(&self.label));
        if let Some(d) = &self.remote_dir {
            if d.exists() {
                left.push(format!("remote directory {} still exists", d.display()));
            }
        }
        left
    }

    /// Waits a little for processes that are being torn down (sshd sessions end after their
    /// client), then fails if anything of the guest remains.
    fn assert_all_gone(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!("{name}: left behind:\n{}", left.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Cgroups of this test process whose name ends with `label`, in every hierarchy (runsc made
/// its own in each cgroup-v1 hierarchy, and left them when killed).
fn cgroups_of(label: &str) -> Vec<String> {
    let prefix = format!("hvbench-{}-", std::process::id());
    let mut found = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for c in std::fs::read_dir(h.path()).into_iter().flatten().flatten() {
            let n = c.file_name().to_string_lossy().into_owned();
            if n.starts_with(&prefix) && n.ends_with(label) && c.path().is_dir() {
                found.push(format!("cgroup {}", c.path().display()));
            }
        }
    }
    found
}

/// An sshd on 127.0.0.1 with throw-away host and client keys, killed on drop.
struct Sshd {
    child: Child,
    options: BackendOptions,
    _dir: WorkDir,
}

fn find_program(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

impl Sshd {
    fn start() -> Result<Sshd, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root: the test's sshd needs root".into());
        }
        let sshd = find_program("sshd").ok_or("sshd not found (apt-get install openssh-server)")?;
        let keygen = find_program("ssh-keygen").ok_or("ssh-keygen not found")?;
        let unshare = find_program("unshare").ok_or("unshare not found")?;
        let dir = WorkDir::new("sshd").map_err(|e| e.to_string())?;
        let d = dir.path();
        for key in ["host_key", "client_key"] {
            let st = Command::new(&keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "hvbench-test", "-f"])
                .arg(d.join(key))
                .status()
                .map_err(|e| e.to_string())?;
            if !st.success() {
                return Err(format!("ssh-keygen failed for {key}"));
            }
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))
            .map_err(|e| e.to_string())?;
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let config = d.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile none\n\
                     AuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     StrictModes no\nUsePAM no\nPrintMotd no\nLogLevel VERBOSE\n",
                    host = d.join("host_key").display(),
                    auth = d.join("authorized_keys").display(),
                ),
            )
            .map_err(|e| e.to_string())?;
            let log = std::fs::File::create(d.join("sshd.log")).map_err(|e| e.to_string())?;
            // Debian's sshd insists on /run/sshd (its privilege-separation directory), which
            // only the ssh service creates. A private mount namespace with a tmpfs over /run
            // gives it one without touching the host.
            let mut cmd = Command::new(&unshare);
            cmd.args(["--mount", "--", "/bin/sh", "-c"])
                .arg(
                    "mount -t tmpfs -o mode=0755 hvbench-sshd /run && mkdir -m 0755 /run/sshd \
                     && exec \"$0\" -D -e -f \"$1\"",
                )
                .arg(&sshd)
                .arg(&config)
                .env_remove(MARKER_VAR)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let mut child = cmd.spawn().map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(5);
            let up = loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break true;
                }
                if Instant::now() >= deadline || matches!(child.try_wait(), Ok(Some(_))) {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if !up {
                kill_group(&mut child);
                last_error = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
                continue;
            }
            let known_hosts = d.join("known_hosts");
            std::fs::write(
                &known_hosts,
                format!("[127.0.0.1]:{port} {}\n", host_pub.join(" ")),
            )
            .map_err(|e| e.to_string())?;
            let options = BackendOptions {
                ssh_target: Some(format!("root@127.0.0.1:{port}")),
                ssh_identity: Some(d.join("client_key")),
                // Host-key checking stays on, against this sshd's key only.
                ssh_options: vec![
                    format!("UserKnownHostsFile={}", known_hosts.display()),
                    "GlobalKnownHostsFile=/dev/null".into(),
                    "IdentitiesOnly=yes".into(),
                ],
                ..Default::default()
            };
            return Ok(Sshd {
                child,
                options,
                _dir: dir,
            });
        }
        Err(format!("sshd did not start: {last_error}"))
    }
}

fn kill_group(child: &mut Child) {
    // SAFETY: kill has no memory-safety preconditions; the child leads its own process group
    // and is not reaped yet, so the group id is still its own.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.wait();
}

impl Drop for Sshd {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// The table: every backend with its agent on a byte stream, and whether CI must run it.
macro_rules! every_backend {
    ($($name:ident: $make:expr, required_in_ci: $required:expr;)*) => {
        mod end_to_end {
            $(
                #[test]
                fn $name() {
                    super::end_to_end(stringify!($name), $make, $required);
                }
            )*
        }
        mod killed_mid_job {
            $(
                #[test]
                fn $name() {
                    super::killed_mid_job(stringify!($name), $make, $required);
                }
            )*
        }
        mod pinned {
            $(
                #[test]
                fn $name() {
                    super::pinned(stringify!($name), $make, $required);
                }
            )*
        }
        mod start_time {
            $(
                #[test]
                #[ignore = "a measurement, not a check: run with --ignored --nocapture"]
                fn $name() {
                    super::start_time(stringify!($name), $make, $required);
                }
            )*
        }
    };
}

every_backend! {
    native: super::native, required_in_ci: true;
    namespace: super::namespace, required_in_ci: true;
    namespace_bwrap: super::namespace_bwrap, required_in_ci: true;
    gvisor: super::gvisor, required_in_ci: true;
    // gVisor's default platform since 2023 (runsc from bookworm-backports), and the old one.
    gvisor_systrap: super::gvisor_systrap, required_in_ci: true;
    gvisor_ptrace: super::gvisor_ptrace, required_in_ci: true;
    // Its kernel comes with it (scripts/install-uml, or the user-mode-linux package).
    uml: super::uml, required_in_ci: true;
    uml_debian12: super::uml_debian12, required_in_ci: false;
    // Needs a kernel in /boot besides qemu, which a CI container may lack.
    qemu_tcg: super::qemu_tcg, required_in_ci: false;
    ssh: super::ssh, required_in_ci: true;
}

/// A forced platform that cannot start (kvm on a /dev/kvm that does not run guests hangs) is
/// unavailable within the probe's time bound, and leaves no sandbox behind.
#[test]
fn gvisor_forced_platform_probe_is_bounded() {
    let _one_at_a_time = serial();
    marker();
    let backend = Gvisor::new(&BackendOptions {
        gvisor_platform: Some("kvm".into()),
        ..Default::default()
    });
    let t0 = Instant::now();
    let a = backend.probe(&agent());
    let took = t0.elapsed();
    eprintln!("gvisor --gvisor-platform kvm: {a:?} in {took:?}");
    assert!(took < Duration::from_secs(15), "the probe took {took:?}");
    // The probe's work directory is hvbench-<pid>-<n>-gvisor-probe (other test processes may
    // probe at the same time).
    let ours = format!("hvbench-{}-", std::process::id());
    let left: Vec<String> = processes()
        .iter()
        .filter(|p| {
            !p.zombie
                && (p.marked || (p.cmdline.contains(&ours) && p.cmdline.contains("gvisor-probe")))
        })
        .map(|p| format!("{}: {}", p.pid, p.cmdline))
        .collect();
    assert!(left.is_empty(), "the probe left {left:?}");
}

/// Host-key checking is on: a target whose key is not in known_hosts is refused, with a hint.
#[test]
fn ssh_unknown_host_key_is_refused() {
    let _one_at_a_time = serial();
    marker();
    let sshd = match Sshd::start() {
        Ok(s) => s,
        Err(why) if !ci() => return eprintln!("skipping: {why}"),
        Err(why) => panic!("the ssh backend must be tested in CI, but: {why}"),
    };
    let mut options = sshd.options.clone();
    options.ssh_options = vec!["UserKnownHostsFile=/dev/null".into()];
    let a = Ssh::new(&options).probe(&agent());
    let Availability::Unavailable { reason, hint } = &a else {
        panic!("an unknown host key must not be accepted: {a:?}")
    };
    assert!(reason.contains("Host key verification failed"), "{reason}");
    assert!(hint.contains("known_hosts"), "{hint}");
}

/// A target that does not answer is unavailable at once, with ssh's own words.
#[test]
fn ssh_refused_connection_is_unavailable() {
    if find_program("ssh").is_none() {
        return eprintln!("skipping: no ssh");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let t0 = Instant::now();
    let a = Ssh::new(&BackendOptions {
        ssh_target: Some(format!("nobody@127.0.0.1:{port}")),
        ..Default::default()
    })
    .probe(&agent());
    let Availability::Unavailable { reason, .. } = &a else {
        panic!("nothing listens there: {a:?}")
    };
    assert!(reason.contains("Connection refused"), "{reason}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

/// A UML guest asked for more vCPUs runs the one CPU its kernel has and records the request;
/// after a clean shutdown UML has removed its machine directory (`uml_dir=.`, `umid=`) and
/// made none in `~/.uml`.
#[test]
fn uml_runs_one_cpu_and_cleans_up_after_itself() {
    let _one_at_a_time = serial();
    marker();
    let Some(subject) = prepare("uml", uml, true) else {
        return;
    };
    let home_uml = std::env::var_os("HOME").map(|h| Path::new(&h).join(".uml"));
    let home_uml_before = home_uml.as_ref().is_some_and(|p| p.exists());
    let wd = WorkDir::new("uml").unwrap();
    let mut spec = spec(&wd, "uml-vcpus");
    spec.vcpus = 2;
    let guest = Guest::start(&*subject.backend, &spec, subject.backend.hello_timeout())
        .unwrap_or_else(|e| panic!("uml: guest did not start: {e}"));
    assert_eq!(guest.hello.cpus, 1, "{:?}", guest.hello);
    assert_eq!(guest.config.vcpus, Some(1));
    let asked = &guest.config.settings["vcpus_requested"];
    assert!(asked.starts_with("2 "), "{asked}");
    assert!(
        spec.workdir.join("uml-vcpus").join("pid").exists(),
        "UML's machine directory belongs in the work directory"
    );
    let running = GuestProcesses::snapshot(&guest, &wd, &subject);
    guest.shutdown(Duration::from_secs(10));
    running.assert_all_gone("uml");
    assert!(!spec.workdir.join("uml-vcpus").exists());
    if !home_uml_before {
        assert!(!home_uml.is_some_and(|p| p.exists()), "~/.uml was created");
    }
}

/// Launch-to-hello of UML as configured and without each boot-time shortcut: the delay-loop
/// calibration (`lpj=`), the RAID-6 benchmark (`initcall_blacklist=`) and the 512 legacy pty
/// devices (`pty.legacy_count=0`; every device runs the uevent helper, a host process). The
/// variants take turns, so that the host's load hits them alike.
#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn uml_boot_time_with_and_without_shortcuts() {
    const ROUNDS: usize = 7;
    let _one_at_a_time = serial();
    marker();
    if prepare("uml", uml, false).is_none() {
        return;
    }
    let variants = [
        Uml::new(),
        Uml::custom("uml-calibrated", |c| c.lpj = None),
        Uml::custom("uml-raid6", |c| c.skip_initcalls.clear()),
        Uml::custom("uml-ptys", |c| c.legacy_ptys = None),
        Uml::custom("uml-no-shortcut", |c| {
            c.lpj = None;
            c.skip_initcalls.clear();
            c.legacy_ptys = None;
        }),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for round in 0..ROUNDS {
        for (v, backend) in variants.iter().enumerate() {
            let wd = WorkDir::new("uml").unwrap();
            let label = format!("{}-{round}", backend.name());
            let guest = Guest::start(backend, &spec(&wd, &label), backend.hello_timeout())
                .unwrap_or_else(|e| panic!("{label}: guest did not start: {e}"));
            times[v].push(guest.boot);
            guest.shutdown(Duration::from_secs(10));
        }
    }
    for (backend, t) in variants.iter().zip(&mut times) {
        t.sort();
        eprintln!(
            "{:>15}: launch to hello over {ROUNDS} guests: median {:?}, min {:?}, max {:?}",
            backend.name(),
            t[ROUNDS / 2],
            t[0],
            t[ROUNDS - 1]
        );
    }
}

/// Regression: UML's helper processes (its I/O threads share the kernel process's descriptor
/// table but not its life) outlived a kernel process killed on its own, because the guest's
/// group kill was skipped once the group's leader had exited; and they held the agent's socket
/// open, so the host noticed nothing until a timeout. Now the host notices at once and the
/// group is killed whatever became of its leader.
#[test]
fn uml_helpers_go_when_only_the_kernel_process_is_killed() {
    let _one_at_a_time = serial();
    marker();
    let Some(subject) = prepare("uml", uml, true) else {
        return;
    };
    let wd = WorkDir::new("uml").unwrap();
    let mut guest = Guest::start(
        &*subject.backend,
        &spec(&wd, "uml-leader"),
        subject.backend.hello_timeout(),
    )
    .unwrap_or_else(|e| panic!("uml: guest did not start: {e}"));
    let running = GuestProcesses::snapshot(&guest, &wd, &subject);
    assert!(
        running.tracked.len() > 1,
        "UML should have helper processes"
    );
    let leader = guest.host_pids()[0];
    let mut killed_at = None;
    let result = guest.run_job(getppid_job(0.2, 50), Duration::from_secs(60), |_| {
        if killed_at.is_none() {
            // SAFETY: kill has no memory-safety preconditions; the pid is this guest's UML
            // kernel process, not reaped yet (the guest holds it).
            unsafe {
                libc::kill(leader as libc::pid_t, libc::SIGKILL);
            }
            killed_at = Some(Instant::now());
        }
    });
    let noticed = killed_at.expect("a sample arrived").elapsed();
    assert!(
        matches!(result, Err(GuestError::Closed { .. })),
        "{result:?}"
    );
    eprintln!("uml: kernel process killed mid-job, noticed after {noticed:?}");
    assert!(
        noticed < Duration::from_secs(5),
        "took {noticed:?} to notice"
    );
    drop(guest);
    running.assert_all_gone("uml");
}
