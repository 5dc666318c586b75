//! `app.compile` and `app.compile.xz`: a cold build of a real C project, `./configure && make
//! -j<CPUs>`, as seeds 001 and 004 time it.
//!
//! The projects are the upstream sources of Debian source packages fetched at image build
//! (`/usr/src/hvbench/<package>_*.orig.tar.*`): zlib (its own small configure script and about
//! twenty C files, its static library and two programs: a few seconds natively, so that the
//! default suite stays within minutes on a binary translator) and xz-utils (`app.compile.xz`, suite `app-full`: an autoconf configure
//! of several hundred checks and a library with its tools, about 30 s on one CPU). Each
//! repetition starts from a clean tree on the guest's disk
//! (`/mnt/build`, unpacked before the clock starts), runs configure (hundreds of short
//! compiler and shell processes: fork, exec and page faults, what virtualization costs most)
//! and make with one job per CPU the agent may use (compiler processes: mostly user CPU), as
//! root in the root file system, without ccache. The metric is the seconds of both
//! together; `configure_s` and `make_s` apart.
//!
//! A warm-up repetition ([`crate::is_warmup`]) unpacks and configures only: configure runs the
//! compiler, assembler and linker on the system headers, which fills the page cache a build
//! needs; a whole build as warm-up cost minutes under binary translation for nothing measured.
//!
//! `app.compile.kernel` (suite `app-full`) builds Linux as seed 004 does: the `linux-source`
//! tarball of the root file system's Debian release, `make tinyconfig` and `make -j<CPUs>`
//! (a 32-bit x86 kernel of the smallest configuration: thousands of compiler processes, the
//! kernel's own host tools, the link; minutes natively,
//! tens of minutes under binary translation). The tree (1.4 GB) is unpacked once per agent, before
//! the first clock; every repetition starts from `make mrproper` (untimed), so each build is
//! cold (no object, no configuration) with the sources in the page cache, as for zlib.

use std::time::{Duration, Instant};

use super::root::AppRoot;
use super::{output_tail, run_checked};
use crate::{param_u64, Outcome, Params, WorkloadError};

/// A project to build.
#[derive(Debug, Clone, Copy)]
pub struct Project {
    /// The Debian source package whose tarball is in `/usr/src/hvbench`.
    pub package: &'static str,
    pub configure_args: &'static str,
    /// What `make` builds (empty: the default target).
    pub make_targets: &'static str,
}

/// The static library and its two programs (`--static`): each source file is compiled once,
/// not again as position-independent code for the shared library (which halves the build) nor
/// again with `-D_FILE_OFFSET_BITS=64` for the default target's `example64` and `minigzip64`
/// (the same two files: 16% of the build, 10 s a repetition under binary translation, no code
/// that the build had not compiled already). About 3 s on one CPU here, 55 s under binary
/// translation.
pub const ZLIB: Project = Project {
    package: "zlib",
    configure_args: "--static",
    make_targets: "libz.a example minigzip",
};

pub const XZ: Project = Project {
    package: "xz-utils",
    configure_args: "--disable-nls --disable-doc",
    make_targets: "",
};

/// The source tarball of `project` inside the root.
fn source(root: &AppRoot, project: Project) -> Result<String, WorkloadError> {
    let dir = root.root.join("usr/src/hvbench");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| {
            WorkloadError::Unsupported(format!(
                "no compile source in the root file system ({}: {e}); rebuild it with hvbench \
                 image build",
                dir.display()
            ))
        })?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| {
            n.starts_with(&format!("{}_", project.package))
                && n.contains(".orig.tar.")
                && !n.ends_with(".asc")
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|n| format!("/usr/src/hvbench/{n}"))
        .ok_or_else(|| {
            WorkloadError::Unsupported(format!(
                "no {} source in the root file system; rebuild it (hvbench image rm --all; \
                 hvbench image build)",
                project.package
            ))
        })
}

fn shell(root: &AppRoot, script: &str, what: &str) -> Result<String, WorkloadError> {
    let mut cmd = root.command("/bin/sh", None);
    cmd.args(["-c", script]);
    run_checked(&mut cmd, what)
}

pub fn run_zlib(params: &Params, seconds: u64) -> Result<Outcome, WorkloadError> {
    run(params, seconds, ZLIB)
}

pub fn run_xz(params: &Params, seconds: u64) -> Result<Outcome, WorkloadError> {
    run(params, seconds, XZ)
}

/// `make -j` jobs: `jobs`, or one per CPU the applications may use.
fn jobs(params: &Params) -> Result<u64, WorkloadError> {
    let cpus = match params.get("cpus").and_then(|v| v.as_u64()) {
        Some(n) => super::root::first_cpus(n as usize).len() as u64,
        None => std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
    };
    Ok(param_u64(params, "jobs", cpus)?.clamp(1, 256))
}

/// Labels every build records.
fn describe_build(out: &mut Outcome, root: &AppRoot, project: String, jobs: u64) {
    let gcc = shell(root, "gcc -dumpfullversion", "gcc -dumpfullversion")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    out.labels.insert("project".into(), project);
    out.labels.insert("jobs".into(), jobs.to_string());
    out.labels.insert("gcc".into(), gcc);
    out.labels
        .insert("ccache".into(), "off (not installed)".into());
}

/// Long output (a compiler's) cut to its tail.
fn shorten(e: WorkloadError) -> WorkloadError {
    match e {
        WorkloadError::Failed(m) if m.len() > 2000 => WorkloadError::Failed(output_tail(&m)),
        other => other,
    }
}

/// The `linux-source-*.tar.*` of the root file system's release.
fn kernel_source(root: &AppRoot) -> Result<String, WorkloadError> {
    let dir = root.root.join("usr/src");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| WorkloadError::Unsupported(format!("{}: {e}", dir.display())))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| n.starts_with("linux-source-") && n.contains(".tar."))
        .collect();
    found.sort();
    found.pop().map(|n| format!("/usr/src/{n}")).ok_or_else(|| {
        WorkloadError::Unsupported(
            "no linux-source tarball in the root file system; rebuild it (hvbench image rm \
                 --all; hvbench image build)"
                .into(),
        )
    })
}

/// Where the kernel tree is unpacked, and the file that says it was unpacked completely.
const KERNEL_TREE: &str = "/mnt/linux";
const KERNEL_UNPACKED: &str = "/mnt/linux/.hvbench-unpacked";

pub fn run_kernel(params: &Params, _seconds: u64) -> Result<Outcome, WorkloadError> {
    let jobs = jobs(params)?;
    super::with_app(params, |app| {
        let root = &app.root;
        let tarball = kernel_source(root)?;
        if !root.outside(KERNEL_UNPACKED).exists() {
            let tree = root.outside(KERNEL_TREE);
            if tree.exists() {
                std::fs::remove_dir_all(&tree)
                    .map_err(|e| WorkloadError::Failed(format!("{}: {e}", tree.display())))?;
            }
            shell(
                root,
                &format!(
                    "mkdir -p {KERNEL_TREE} && tar -xf {tarball} -C {KERNEL_TREE} \
                     --strip-components=1 && touch {KERNEL_UNPACKED}"
                ),
                "unpacking the kernel source",
            )?;
        }
        shell(
            root,
            &format!("cd {KERNEL_TREE} && make -s mrproper && sync"),
            "make mrproper",
        )?;
        let t0 = Instant::now();
        shell(
            root,
            &format!("cd {KERNEL_TREE} && make -s tinyconfig >/dev/null"),
            "make tinyconfig",
        )?;
        let t1 = Instant::now();
        if crate::is_warmup(params) {
            // tinyconfig builds and runs the kernel's host tools (kconfig) with the compiler.
            return Ok(warmed_up(t1 - t0));
        }
        shell(
            root,
            &format!("cd {KERNEL_TREE} && make -s -j{jobs} >/dev/null"),
            "make",
        )?;
        let t2 = Instant::now();
        let image = root.outside(&format!("{KERNEL_TREE}/arch/x86/boot/bzImage"));
        let image_bytes = std::fs::metadata(&image).map(|m| m.len()).map_err(|e| {
            WorkloadError::Failed(format!(
                "the build made no kernel ({}: {e})",
                image.display()
            ))
        })?;
        let mut out = Outcome::new(1.0, t2 - t0);
        out.extras
            .insert("configure_s".into(), (t1 - t0).as_secs_f64());
        out.extras.insert("make_s".into(), (t2 - t1).as_secs_f64());
        out.extras
            .insert("bzimage_bytes".into(), image_bytes as f64);
        let project = tarball.rsplit('/').next().unwrap_or_default().to_string();
        describe_build(&mut out, root, format!("{project} (tinyconfig)"), jobs);
        Ok(out)
    })
    .map_err(shorten)
}

fn run(params: &Params, _seconds: u64, project: Project) -> Result<Outcome, WorkloadError> {
    let jobs = jobs(params)?;
    super::with_app(params, |app| {
        let root = &app.root;
        let tarball = source(root, project)?;
        let build = root.outside("/mnt/build");
        if build.exists() {
            std::fs::remove_dir_all(&build)
                .map_err(|e| WorkloadError::Failed(format!("{}: {e}", build.display())))?;
        }
        shell(
            root,
            &format!("mkdir -p /mnt/build && tar -xf {tarball} -C /mnt/build --strip-components=1"),
            "unpacking the source",
        )?;
        // The unpacked tree is on the disk before the clock starts.
        shell(root, "sync", "sync")?;
        let t0 = Instant::now();
        shell(
            root,
            &format!(
                "cd /mnt/build && ./configure {} >/dev/null",
                project.configure_args
            ),
            "configure",
        )?;
        let t1 = Instant::now();
        if crate::is_warmup(params) {
            // configure runs the compiler, assembler and linker on the system's headers: it
            // fills the page cache the build needs, for a fraction of the build's time.
            let _ = std::fs::remove_dir_all(&build);
            return Ok(warmed_up(t1 - t0));
        }
        shell(
            root,
            &format!(
                "cd /mnt/build && make -s -j{jobs} {} >/dev/null",
                project.make_targets
            ),
            "make",
        )?;
        let t2 = Instant::now();
        let _ = std::fs::remove_dir_all(&build);
        let mut out = Outcome::new(1.0, t2 - t0);
        out.extras
            .insert("configure_s".into(), (t1 - t0).as_secs_f64());
        out.extras.insert("make_s".into(), (t2 - t1).as_secs_f64());
        let project = tarball.rsplit('/').next().unwrap_or_default().to_string();
        describe_build(&mut out, root, project, jobs);
        Ok(out)
    })
    .map_err(shorten)
}

/// A warm-up's outcome: the configuration step only (a whole build would cost minutes under
/// binary translation for nothing measured).
fn warmed_up(configure: Duration) -> Outcome {
    let mut out = Outcome::new(1.0, configure);
    out.labels
        .insert("warmup".into(), "configure only: fills the caches".into());
    out
}

/// Bound on one build, beyond the target duration: a build under binary translation takes
/// minutes.
pub const TIMEOUT: Duration = Duration::from_secs(1800);

/// Bound on one kernel build: about fifty minutes under binary translation here.
pub const KERNEL_TIMEOUT: Duration = Duration::from_secs(4 * 3600);
