//! Root file systems for application workloads: one Debian root file system per recipe, built
//! once with mmdebstrap and cached by the recipe's hash.
//!
//! Micro workloads need no userland (the agent is `/init` of an initramfs); applications do
//! (PostgreSQL, a C toolchain, nginx). Each recipe becomes, under the cache directory
//! (`~/.cache/hvbench/rootfs-<hash>/`, or `--image-dir`):
//! - `root/`: the tree, for the backends that use a directory (a chroot on the host for the
//!   native baseline, namespace, gVisor);
//! - `rootfs.ext4`: the same tree as an ext4 image made without mounting anything
//!   (`mke2fs -d`), for the kernel backends (QEMU, UML, Firecracker, Cloud Hypervisor), which
//!   attach it read-only;
//! - `manifest.json`: the recipe, every package with its version (recorded in each result
//!   document), sizes and how long the build took.
//!
//! A build goes to a temporary directory beside the cache entry and is renamed into place only
//! when complete, so an interrupted build is never taken for a cached one. The agent is not in
//! the image: the same agent binary of the run enters it (a chroot), so rebuilding hvbench does
//! not rebuild the image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped whenever the layout of a root file system changes, so that cached ones are rebuilt.
pub const ROOTFS_FORMAT: u32 = 2;

/// What goes into a root file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// Debian suite (`bookworm`), taken from the host's apt configuration.
    pub suite: String,
    /// mmdebstrap variant: `minbase` (essential and required packages only).
    pub variant: String,
    /// Packages on top of the variant, with their dependencies.
    pub packages: Vec<String>,
    /// Source packages whose upstream tarball goes to `/usr/src/hvbench` (what `app.compile`
    /// builds), fetched with `apt-get source --download-only` from the same mirror.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Scales of `pgbench -i` whose database is made at build, with the tree's own PostgreSQL,
    /// into `/var/lib/hvbench/pgbench-s<scale>` (see [`pgbench_template_script`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pgbench_scales: Vec<u32>,
}

impl Recipe {
    /// The applications' recipe: PostgreSQL with pgbench, a C toolchain and the sources of
    /// zlib and xz-utils to build with it, the release's Linux source and the tools a kernel
    /// build needs (bc, bison, flex), nginx; e2fsprogs (mke2fs) in the tree.
    pub fn applications(suite: &str) -> Recipe {
        Recipe {
            suite: suite.into(),
            variant: "minbase".into(),
            packages: [
                "postgresql",
                "nginx-light",
                "gcc",
                "make",
                "libc6-dev",
                "xz-utils",
                "bzip2",
                "e2fsprogs",
                // app.compile.kernel: the release's kernel source and what tinyconfig needs.
                "linux-source",
                "bc",
                "bison",
                "flex",
            ]
            .map(String::from)
            .to_vec(),
            sources: vec!["zlib".into(), "xz-utils".into()],
            pgbench_scales: vec![hvbench_workloads::app::pgbench::TEMPLATE_SCALE],
        }
    }

    /// The cache key: a hash of the recipe and the layout version.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(ROOTFS_FORMAT.to_le_bytes());
        h.update(serde_json::to_vec(self).expect("a recipe serializes"));
        let digest = h.finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A built root file system, as its manifest describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub hash: String,
    pub recipe: Recipe,
    /// Every installed package and its version (`dpkg-query`).
    pub packages: BTreeMap<String, String>,
    pub tree_bytes: u64,
    pub ext4_bytes: u64,
    pub built_at: String,
    pub build_s: f64,
}

/// A cached root file system.
#[derive(Debug, Clone, PartialEq)]
pub struct RootFs {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl RootFs {
    /// The tree (for chroots).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The ext4 image (for kernel guests).
    pub fn ext4(&self) -> PathBuf {
        self.dir.join("rootfs.ext4")
    }
}

/// Why a root file system could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{tool} not found: apt-get install {package}")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    #[error("building the root file system needs root (mmdebstrap --mode=root)")]
    NotRoot,
    #[error(
        "mmdebstrap failed ({status}); its last words:\n{tail}\n(check the apt sources in \
         /etc/apt/sources.list{{,.d}} and that the mirror is reachable)"
    )]
    Debootstrap { status: String, tail: String },
    #[error("{what}: {detail}")]
    Step { what: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The Debian suite of the host (`VERSION_CODENAME` of /etc/os-release).
pub fn host_suite() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// The cache directory of root file systems: `dir` when given, else hvbench's cache.
pub fn cache_root(dir: Option<&Path>) -> PathBuf {
    dir.map(Path::to_path_buf).unwrap_or_else(super::cache_dir)
}

/// The cached root file system of `recipe` under `cache`, if one is complete.
pub fn cached(cache: &Path, recipe: &Recipe) -> Option<RootFs> {
    load(&cache.join(format!("rootfs-{}", recipe.hash())))
}

fn load(dir: &Path) -> Option<RootFs> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
    let manifest: Manifest = serde_json::from_str(&text).ok()?;
    (dir.join("root").is_dir() && dir.join("rootfs.ext4").is_file()).then(|| RootFs {
        dir: dir.to_path_buf(),
        manifest,
    })
}

/// Every complete root file system under `cache`.
pub fn list(cache: &Path) -> Vec<RootFs> {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut v: Vec<RootFs> = rd
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("rootfs-") && !n.contains(".tmp")
        })
        .filter_map(|e| load(&e.path()))
        .collect();
    v.sort_by(|a, b| a.manifest.built_at.cmp(&b.manifest.built_at));
    v
}

/// Removes the root file system whose hash starts with `prefix` (every one with `None`), and
/// unfinished builds; returns the directories removed.
pub fn remove(cache: &Path, prefix: Option<&str>) -> Result<Vec<PathBuf>, RootfsError> {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("rootfs-") else {
            continue;
        };
        if prefix.is_none_or_matches(rest) {
            std::fs::remove_dir_all(e.path()).map_err(io(&e.path()))?;
            removed.push(e.path());
        }
    }
    Ok(removed)
}

trait PrefixMatch {
    fn is_none_or_matches(&self, name: &str) -> bool;
}

impl PrefixMatch for Option<&str> {
    fn is_none_or_matches(&self, name: &str) -> bool {
        match self {
            None => true,
            Some(p) => name.starts_with(p),
        }
    }
}

/// Builds the root file system of `recipe` under `cache` unless it is there already; `say`
/// gets a line for each step (the build takes minutes).
pub fn build(cache: &Path, recipe: &Recipe, say: &dyn Fn(&str)) -> Result<RootFs, RootfsError> {
    if let Some(done) = cached(cache, recipe) {
        return Ok(done);
    }
    require_tool("mmdebstrap", "mmdebstrap")?;
    require_tool("mke2fs", "e2fsprogs")?;
    if !crate::launch::host_tool::is_root() {
        return Err(RootfsError::NotRoot);
    }
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    let hash = recipe.hash();
    let dir = cache.join(format!("rootfs-{hash}"));
    let tmp = cache.join(format!("rootfs-{hash}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let t0 = Instant::now();
    let result = build_in(&tmp, recipe, say, t0);
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let text = serde_json::to_string_pretty(&manifest).expect("a manifest serializes");
    let mpath = tmp.join("manifest.json");
    std::fs::write(&mpath, text).map_err(io(&mpath))?;
    // Another hvbench may have finished the same recipe meanwhile: keep the first.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    load(&dir).ok_or_else(|| RootfsError::Step {
        what: "the finished root file system".into(),
        detail: format!("{} is incomplete", dir.display()),
    })
}

fn require_tool(tool: &'static str, package: &'static str) -> Result<(), RootfsError> {
    crate::launch::host_tool::which(tool)
        .map(drop)
        .ok_or(RootfsError::MissingTool { tool, package })
}

fn build_in(
    tmp: &Path,
    recipe: &Recipe,
    say: &dyn Fn(&str),
    t0: Instant,
) -> Result<Manifest, RootfsError> {
    let root = tmp.join("root");
    say(&format!(
        "building a Debian {} {} root file system with {} (mmdebstrap, from this machine's apt \
         sources)",
        recipe.suite,
        recipe.variant,
        recipe.packages.join(", ")
    ));
    run_mmdebstrap(&root, recipe, &tmp.join("mmdebstrap.log"))?;
    say(&format!(
        "  packages installed after {:.0} s",
        t0.elapsed().as_secs_f64()
    ));
    let packages = installed_packages(&root)?;
    let tree_bytes = tree_size(&root);
    let ext4 = tmp.join("rootfs.ext4");
    make_ext4(&root, &ext4, tree_bytes)?;
    let ext4_bytes = std::fs::metadata(&ext4).map(|m| m.len()).unwrap_or(0);
    say(&format!(
        "  ext4 image of {} MiB made after {:.0} s",
        ext4_bytes >> 20,
        t0.elapsed().as_secs_f64()
    ));
    Ok(Manifest {
        hash: recipe.hash(),
        recipe: recipe.clone(),
        packages,
        tree_bytes,
        ext4_bytes,
        built_at: crate::results::rfc3339_utc(std::time::SystemTime::now()),
        build_s: t0.elapsed().as_secs_f64(),
    })
}

/// The mmdebstrap command line for `recipe` into `root`. No mirror is named: mmdebstrap then
/// uses this machine's apt sources for the suite.
pub fn mmdebstrap_args(root: &Path, recipe: &Recipe) -> Vec<String> {
    let mut v: Vec<String> = vec![
        format!("--variant={}", recipe.variant),
        "--mode=root".into(),
        format!("--include={}", recipe.packages.join(",")),
        "--aptopt=Acquire::Languages \"none\"".into(),
        // Documentation is no part of any workload: smaller images, faster builds.
        "--dpkgopt=path-exclude=/usr/share/man/*".into(),
        "--dpkgopt=path-exclude=/usr/share/doc/*".into(),
        "--dpkgopt=path-exclude=/usr/share/locale/*".into(),
        // No service starts inside the tree while it is built.
        "--customize-hook=rm -f \"$1/usr/sbin/policy-rc.d\"".into(),
    ];
    if !recipe.sources.is_empty() {
        v.push(format!(
            "--customize-hook=chroot \"$1\" sh -s < '{}'",
            sources_script_path(root).display()
        ));
    }
    if !recipe.pgbench_scales.is_empty() {
        v.push(format!(
            "--customize-hook=chroot \"$1\" sh -s < '{}'",
            template_script_path(root).display()
        ));
    }
    v.push(recipe.suite.clone());
    v.push(root.display().to_string());
    v
}

/// A shell script, run in the tree, that makes the database of `pgbench -i -s <scale>` for each
/// of `scales` with the tree's PostgreSQL, as `app.pgbench.*` would in a guest, and stops the
/// server cleanly. A guest then copies it to its disk instead of loading it: the load took 36 s
/// of a qemu-tcg guest's set-up and 28 s of a UML guest's (the copy: seconds), every run.
/// The server runs only during the build, without TCP and with its dynamic shared memory in
/// files (a build tree has no `/dev/shm` of its own).
pub fn pgbench_template_script(scales: &[u32]) -> String {
    let scales: Vec<String> = scales.iter().map(u32::to_string).collect();
    format!(
        r#"set -e
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
for scale in {}; do
  d={dir}-s$scale
  rm -rf "$d" && mkdir -p "$d" && chown postgres:postgres "$d" && chmod 700 "$d"
  # A failing step ends the script (set -e): the server must not outlive it in the tree.
  trap 'runuser -u postgres -- "$bin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true' EXIT
  runuser -u postgres -- "$bin/initdb" -D "$d" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$d" -l /tmp/hvbench-pg-template.log -w -t 600     -o "-c listen_addresses= -c unix_socket_directories=/tmp -c dynamic_shared_memory_type=mmap -c fsync=off" start
  runuser -u postgres -- "$bin/createdb" -h /tmp -U postgres bench
  runuser -u postgres -- "$bin/pgbench" -h /tmp -U postgres -i -I dtGvp -q -s "$scale" bench
  runuser -u postgres -- "$bin/pg_ctl" -D "$d" -m fast -w stop
  trap - EXIT
  rm -f /tmp/hvbench-pg-template.log
  du -sh "$d"
done
"#,
        scales.join(" "),
        dir = hvbench_workloads::app::pgbench::TEMPLATE_DIR,
    )
}

/// Where the script of [`pgbench_template_script`] is written for a build into `root`.
fn template_script_path(root: &Path) -> PathBuf {
    root.with_file_name("pgbench-template.sh")
}

/// A shell script, run in the tree, that downloads the upstream tarballs of `sources` into
/// `/usr/src/hvbench`: deb-src entries made from the tree's own apt sources (in either
/// format), `apt-get source --download-only`, then only the `.orig.tar.*` kept and the deb-src
/// entries removed.
pub fn fetch_sources_script(suite: &str, sources: &[String]) -> String {
    // `package/suite`: the version of the suite's own archive, not a security update (whose
    // sources a mirror may not carry), so that every build compiles the same code.
    let wanted: Vec<String> = sources.iter().map(|p| format!("{p}/{suite}")).collect();
    format!(
        r#"set -e
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  if [ -f "$f" ]; then sed -n 's/^deb /deb-src /p' "$f"; fi
done > /etc/apt/sources.list.d/hvbench-src.list
for f in /etc/apt/sources.list.d/*.sources; do
  if [ -f "$f" ]; then
    sed 's/^Types: deb$/Types: deb-src/' "$f" > "/etc/apt/sources.list.d/hvbench-src-$(basename "$f")"
  fi
done
apt-get -q update
mkdir -p /usr/src/hvbench
cd /usr/src/hvbench
apt-get -q source --download-only {}
find . -type f ! -name '*.orig.tar.*' -delete
rm -f ./*.asc /etc/apt/sources.list.d/hvbench-src*
ls -l /usr/src/hvbench
"#,
        wanted.join(" ")
    )
}

/// Where the script of [`fetch_sources_script`] is written for a build into `root`.
fn sources_script_path(root: &Path) -> PathBuf {
    root.with_file_name("fetch-sources.sh")
}

fn run_mmdebstrap(root: &Path, recipe: &Recipe, log: &Path) -> Result<(), RootfsError> {
    let out = std::fs::File::create(log).map_err(io(log))?;
    let err = out.try_clone().map_err(io(log))?;
    if !recipe.sources.is_empty() {
        let script = sources_script_path(root);
        std::fs::write(
            &script,
            fetch_sources_script(&recipe.suite, &recipe.sources),
        )
        .map_err(io(&script))?;
    }
    if !recipe.pgbench_scales.is_empty() {
        let script = template_script_path(root);
        std::fs::write(&script, pgbench_template_script(&recipe.pgbench_scales))
            .map_err(io(&script))?;
    }
    let status = Command::new("mmdebstrap")
        .args(mmdebstrap_args(root, recipe))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(io(Path::new("mmdebstrap")))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    Err(RootfsError::Debootstrap {
        status: status.to_string(),
        tail: crate::launch::host_tool::last_lines(&text, 12),
    })
}

/// `package → version` of every package installed in `root`.
fn installed_packages(root: &Path) -> Result<BTreeMap<String, String>, RootfsError> {
    let out = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Package}\\t${Version}\\n"])
        .output()
        .map_err(io(Path::new("dpkg-query")))?;
    if !out.status.success() {
        return Err(RootfsError::Step {
            what: "dpkg-query".into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(parse_packages(&String::from_utf8_lossy(&out.stdout)))
}

/// `name\tversion` lines.
pub fn parse_packages(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (n, v) = l.split_once('\t')?;
            (!n.is_empty() && !v.is_empty()).then(|| (n.to_string(), v.to_string()))
        })
        .collect()
}

/// Bytes of the regular files under `dir` (links not followed).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// The ext4 image's size for a tree of `tree_bytes`: room for metadata and for small files'
/// blocks (a third more), plus 256 MiB free, rounded up to MiB. The image is sparse.
pub fn ext4_size_mib(tree_bytes: u64) -> u64 {
    let with_room = tree_bytes + tree_bytes / 3 + (256 << 20);
    with_room.div_ceil(1 << 20)
}

fn make_ext4(root: &Path, image: &Path, tree_bytes: u64) -> Result<(), RootfsError> {
    let size = format!("{}M", ext4_size_mib(tree_bytes));
    let out = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "hvbench-rootfs",
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(root)
        .arg(image)
        .arg(&size)
        .output()
        .map_err(io(Path::new("mke2fs")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RootfsError::Step {
            what: format!("mke2fs -d {} {}", root.display(), image.display()),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// How long ago and how big, for `image list`.
pub fn describe(r: &RootFs) -> String {
    let m = &r.manifest;
    format!(
        "{}  {} {}  {} packages  tree {} MiB, ext4 {} MiB  built {} in {:.0} s  {}",
        m.hash,
        m.recipe.suite,
        m.recipe.variant,
        m.packages.len(),
        m.tree_bytes >> 20,
        m.ext4_bytes >> 20,
        m.built_at,
        m.build_s,
        r.dir.display()
    )
}

/// How long a build may take before hvbench says it is still going (for progress lines).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_follows_the_recipe() {
        let a = Recipe::applications("bookworm");
        let mut b = a.clone();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 16);
        b.packages.push("redis-server".into());
        assert_ne!(a.hash(), b.hash());
        assert_ne!(a.hash(), Recipe::applications("trixie").hash());
    }

    #[test]
    fn mmdebstrap_uses_the_hosts_sources_and_the_recipe() {
        let r = Recipe::applications("bookworm");
        let v = mmdebstrap_args(Path::new("/c/root"), &r);
        assert_eq!(&v[v.len() - 2..], ["bookworm", "/c/root"]);
        assert!(v.contains(&"--variant=minbase".to_string()));
        assert!(v.iter().any(|a| a.starts_with("--include=postgresql,")));
        // No mirror argument: the machine's own apt configuration.
        assert!(!v.iter().any(|a| a.starts_with("http")));
        // The pgbench database is made in the tree, after the sources are fetched.
        let hooks: Vec<&String> = v
            .iter()
            .filter(|a| a.starts_with("--customize-hook=chroot"))
            .collect();
        assert_eq!(hooks.len(), 2, "{v:?}");
        assert!(hooks[1].ends_with("/c/pgbench-template.sh'"), "{v:?}");
    }

    #[test]
    fn the_pgbench_database_is_made_as_the_workload_would() {
        let s = pgbench_template_script(&[10]);
        assert!(s.contains("for scale in 10; do"), "{s}");
        assert!(s.contains("d=/var/lib/hvbench/pgbench-s$scale"), "{s}");
        assert!(s.contains("-i -I dtGvp -q -s \"$scale\" bench"), "{s}");
        assert!(s.contains("-m fast -w stop"), "{s}");
    }

    #[test]
    fn packages_are_parsed_from_dpkg_query() {
        let p = parse_packages("postgresql-15\t15.14-0+deb12u1\nnginx-light\t1.22.1-9\n\nbad\n");
        assert_eq!(p.len(), 2);
        assert_eq!(p["nginx-light"], "1.22.1-9");
    }

    #[test]
    fn ext4_has_room() {
        assert_eq!(ext4_size_mib(0), 256);
        assert_eq!(ext4_size_mib(300 << 20), 656);
    }

    #[test]
    fn nothing_cached_in_an_empty_directory() {
        let d = std::env::temp_dir().join(format!("hvbench-rootfs-test-{}", std::process::id()));
        std::fs::create_dir_all(d.join("rootfs-abc.tmp-1")).unwrap();
        assert!(cached(&d, &Recipe::applications("bookworm")).is_none());
        assert!(list(&d).is_empty());
        assert_eq!(remove(&d, None).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }
}
