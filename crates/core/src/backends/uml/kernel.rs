//! Which `linux.uml` binaries exist here, and what each build is.
//!
//! Whether a UML kernel boots depends on the host's CPU as well as on the kernel: UML before
//! 6.13 cannot boot where the host's XSTATE area is larger than its fixed buffer (Intel CPUs
//! with AMX, see [`super::diagnose`]). So there may be two on a machine: Debian 12's
//! `user-mode-linux` (6.1, on PATH) and a newer one that `scripts/install-uml` unpacks under
//! [`INSTALLED_UML`] with its own C library. A user's own goes first (`--uml-binary`); else the
//! probe boots every candidate and takes the newest that boots.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::backends::Availability;
use crate::launch::host_tool::{self, run_bounded};

/// The UML kernel binary's name on PATH (Debian's `user-mode-linux`).
pub const UML_BINARY: &str = "linux.uml";
/// Where `scripts/install-uml` puts a UML >= 6.13 from Debian's newer suites.
pub const INSTALLED_UML: &str = "/usr/local/lib/hvbench/uml/linux.uml";

pub(super) const UML_HINT: &str =
    "scripts/install-uml (a UML >= 6.13 from Debian packages), or apt-get install user-mode-linux";

/// A `linux.uml` found here and what its build says.
#[derive(Debug, Clone, PartialEq)]
pub struct UmlKernel {
    pub binary: PathBuf,
    /// The kernel release (`linux.uml --version`): `6.1.176`.
    pub release: String,
    /// `CONFIG_NR_CPUS` of the build (1: uniprocessor).
    pub nr_cpus: u32,
    /// `CONFIG_HZ` of the build, which the delay-loop constant depends on.
    pub hz: Option<u32>,
}

impl UmlKernel {
    /// Reads the release and configuration of `binary` (bounded: two short runs).
    pub fn read(binary: &Path) -> Result<UmlKernel, Availability> {
        if !binary.exists() {
            return Err(Availability::Unavailable {
                reason: format!("{} does not exist", binary.display()),
                hint: UML_HINT.into(),
            });
        }
        let release = host_tool::version_line(binary, &["--version"]).ok_or_else(|| {
            Availability::Unavailable {
                reason: format!(
                    "{} --version printed nothing (a UML built for a newer C library than \
                     this host's fails so)",
                    binary.display()
                ),
                hint: UML_HINT.into(),
            }
        })?;
        let config = run_bounded(
            Command::new(binary).arg("--showconfig"),
            Stdio::null(),
            Duration::from_secs(5),
        )
        .map(|f| f.stdout)
        .unwrap_or_default();
        let (nr_cpus, hz) = parse_config(&config);
        Ok(UmlKernel {
            binary: binary.to_path_buf(),
            release,
            nr_cpus,
            hz,
        })
    }

    /// Whether this release is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        release_at_least(&self.release, major, minor)
    }
}

/// Whether a release string (`7.2.7`, `6.1.176`, `6.13-rc1`) is at least `major.minor`.
pub fn release_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        (Some(a), None) => a > major,
        _ => false,
    }
}

/// The binaries to try, in order of preference, without duplicates: the user's own alone when
/// given; else the one `scripts/install-uml` installed, then `linux.uml` on PATH.
pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    let installed = PathBuf::from(INSTALLED_UML);
    let mut v: Vec<PathBuf> = Vec::new();
    for p in [
        installed.exists().then_some(installed),
        host_tool::which(UML_BINARY),
    ]
    .into_iter()
    .flatten()
    {
        let real = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if !v
            .iter()
            .any(|q| std::fs::canonicalize(q).unwrap_or_else(|_| q.clone()) == real)
        {
            v.push(p);
        }
    }
    v
}

/// `CONFIG_NR_CPUS` (1 when absent: no SMP) and `CONFIG_HZ` of a `--showconfig` text.
pub fn parse_config(text: &str) -> (u32, Option<u32>) {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    (
        value("CONFIG_NR_CPUS").unwrap_or(1).max(1),
        value("CONFIG_HZ"),
    )
}

/// The delay-loop constant (loops per jiffy) for a UML kernel of `hz` on this host, from the
/// host's BogoMIPS in `/proc/cpuinfo` (twice the clock in MHz on x86), so that the kernel does
/// not calibrate it at boot. UML's delay loop runs about one iteration per cycle, so this is
/// the clock divided by HZ (calibrations here gave 0.7 to 1.3 times this on a busy host). Only
/// `udelay()` depends on it, which no UML device driver waits on: an approximate value costs
/// nothing measured. `None` when the host does not say.
pub fn lpj_for(cpuinfo: &str, hz: Option<u32>) -> Option<u64> {
    let hz = hz.filter(|&h| h > 0)?;
    let bogomips: f64 = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "bogomips").then(|| v.trim().parse().ok())?
        })
        .filter(|b: &f64| b.is_finite() && *b > 0.0)?;
    Some((bogomips * 500_000.0 / f64::from(hz)).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_compare_by_major_and_minor() {
        assert!(release_at_least("7.2.7", 6, 13));
        assert!(release_at_least("6.13", 6, 13));
        assert!(release_at_least("6.13-rc1", 6, 13));
        assert!(!release_at_least("6.12.48", 6, 13));
        assert!(!release_at_least("6.1.176", 6, 13));
        assert!(release_at_least("7", 6, 13));
        assert!(!release_at_least("", 6, 13));
        assert!(!release_at_least("unknown", 6, 13));
    }

    #[test]
    fn an_explicit_binary_is_the_only_candidate() {
        assert_eq!(
            candidates(Some(Path::new("/opt/my/linux"))),
            [PathBuf::from("/opt/my/linux")]
        );
        let found = candidates(None);
        let mut real: Vec<PathBuf> = found
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap())
            .collect();
        real.dedup();
        assert_eq!(real.len(), found.len(), "{found:?}");
    }

    #[test]
    fn a_missing_binary_is_unavailable_with_the_install_hint() {
        match UmlKernel::read(Path::new("/nonexistent/linux.uml")) {
            Err(Availability::Unavailable { reason, hint }) => {
                assert!(reason.contains("does not exist"), "{reason}");
                assert!(hint.contains("install-uml"), "{hint}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lpj_from_cpuinfo() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nbogomips\t: 4890.82\n\n\
                       processor\t: 1\nbogomips\t: 4890.82\n";
        assert_eq!(lpj_for(cpuinfo, Some(100)), Some(24_454_100));
        assert_eq!(lpj_for(cpuinfo, Some(250)), Some(9_781_640));
        assert_eq!(lpj_for(cpuinfo, None), None);
        assert_eq!(lpj_for(cpuinfo, Some(0)), None);
        assert_eq!(lpj_for("model name: x\n", Some(100)), None);
        assert_eq!(lpj_for("bogomips : nan\n", Some(100)), None);
        assert_eq!(lpj_for("bogomips : -3\n", Some(100)), None);
    }

    #[test]
    fn config_of_the_build() {
        let text = "#\n# CONFIG_SMP is not set\nCONFIG_NR_CPUS=1\nCONFIG_HZ_100=y\nCONFIG_HZ=100\n";
        assert_eq!(parse_config(text), (1, Some(100)));
        assert_eq!(parse_config("CONFIG_NR_CPUS=8\n"), (8, None));
        assert_eq!(parse_config(""), (1, None));
        // CONFIG_HZ_100=y is not CONFIG_HZ.
        assert_eq!(parse_config("CONFIG_HZ_100=y\n").1, None);
    }
}
