//! Facts about the host, recorded with every result: the numbers mean little without them.
//!
//! The host may itself be a virtual machine (this project's development machines are), in which
//! case every guest is a nested guest; the detected hypervisor is recorded so readers know.

use std::collections::BTreeMap;
use std::fs;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: String,
    pub cpu_model: String,
    /// Logical CPUs online.
    pub cpus: u32,
    /// CPUs this process may run on (affinity), which bounds what guests get.
    pub cpus_allowed: u32,
    pub memory_kib: u64,
    pub kernel: String,
    /// The hypervisor this host runs under, if any (`kvm`, `vmware`, ...), or `none`.
    pub virtualization: String,
    /// How that was detected.
    pub virtualization_evidence: String,
    /// Whether /dev/kvm exists (its usability is a backend probe's business).
    pub dev_kvm: bool,
    /// Nested virtualization as the kvm module reports it, when loaded.
    pub kvm_nested: Option<String>,
    pub clocksource: Option<String>,
    /// `/sys/devices/system/cpu/vulnerabilities/*`: mitigations change system call costs.
    pub mitigations: BTreeMap<String, String>,
    /// `/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor`, when present.
    pub cpu_governor: Option<String>,
    /// Sockets, cores, SMT siblings and NUMA nodes of the online CPUs (sysfs).
    #[serde(default)]
    pub topology: crate::placement::Topology,
    /// Size of the XSTATE area for the features the host kernel enabled (CPUID 0xD): 11008
    /// bytes with AMX, which UML before 6.13 cannot handle.
    #[serde(default)]
    pub xstate_bytes: Option<u32>,
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl HostInfo {
    pub fn detect() -> HostInfo {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let online =
            count_cpu_list(&read_trim("/sys/devices/system/cpu/online").unwrap_or_default())
                .unwrap_or(cpus);
        let memory_kib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().find_map(|l| {
                    l.strip_prefix("MemTotal:")
                        .map(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                })
            })
            .flatten()
            .unwrap_or(0);
        let kernel = format!(
            "{} {}",
            read_trim("/proc/sys/kernel/osrelease").unwrap_or_default(),
            read_trim("/proc/sys/kernel/version").unwrap_or_default()
        );
        let (virtualization, virtualization_evidence) = detect_virtualization(&cpuinfo);
        let mut mitigations = BTreeMap::new();
        if let Ok(dir) = fs::read_dir("/sys/devices/system/cpu/vulnerabilities") {
            for e in dir.flatten() {
                if let Ok(v) = fs::read_to_string(e.path()) {
                    mitigations.insert(
                        e.file_name().to_string_lossy().into_owned(),
                        v.trim().to_string(),
                    );
                }
            }
        }
        HostInfo {
            hostname: read_trim("/proc/sys/kernel/hostname").unwrap_or_default(),
            cpu_model,
            cpus: online,
            cpus_allowed: cpus,
            memory_kib,
            kernel,
            virtualization,
            virtualization_evidence,
            dev_kvm: std::path::Path::new("/dev/kvm").exists(),
            kvm_nested: read_trim("/sys/module/kvm_intel/parameters/nested")
                .or_else(|| read_trim("/sys/module/kvm_amd/parameters/nested")),
            clocksource: read_trim(
                "/sys/devices/system/cpu/clocksource/clocksource0/current_clocksource",
            )
            .or_else(|| {
                read_trim("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            }),
            mitigations,
            cpu_governor: read_trim("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            topology: crate::placement::Topology::detect(),
            xstate_bytes: xstate_bytes(),
        }
    }
}

/// The size in bytes of the host's XSTATE area for the features the kernel enabled (CPUID
/// leaf 0xD, sub-leaf 0, EBX): what a PTRACE_SETREGSET of NT_X86_XSTATE must match.
pub fn xstate_bytes() -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::x86_64::__cpuid(0).eax < 0xD {
            return None;
        }
        let r = std::arch::x86_64::__cpuid_count(0xD, 0);
        (r.ebx > 0).then_some(r.ebx)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Counts CPUs in a list such as `0-3,6,8-9`.
pub fn count_cpu_list(list: &str) -> Option<u32> {
    let mut n = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => n += b.trim().parse::<u32>().ok()? - a.trim().parse::<u32>().ok()? + 1,
            None => {
                part.trim().parse::<u32>().ok()?;
                n += 1
            }
        }
    }
    (n > 0).then_some(n)
}

fn detect_virtualization(cpuinfo: &str) -> (String, String) {
    // The CPUID hypervisor leaf names the hypervisor directly.
    #[cfg(target_arch = "x86_64")]
    {
        let leaf1 = core::arch::x86_64::__cpuid(1);
        if leaf1.ecx & (1 << 31) != 0 {
            // Leaf 0x4000_0000 is the hypervisor's when the hypervisor bit is set.
            let l = core::arch::x86_64::__cpuid(0x4000_0000);
            let mut sig = Vec::with_capacity(12);
            for r in [l.ebx, l.ecx, l.edx] {
                sig.extend_from_slice(&r.to_le_bytes());
            }
            let sig = String::from_utf8_lossy(&sig)
                .trim_matches(char::from(0))
                .to_string();
            let name = match sig.as_str() {
                "KVMKVMKVM" => "kvm",
                "VMwareVMware" => "vmware",
                "Microsoft Hv" => "microsoft",
                "XenVMMXenVMM" => "xen",
                "TCGTCGTCGTCG" => "qemu-tcg",
                "VBoxVBoxVBox" => "virtualbox",
                "ACRNACRNACRN" => "acrn",
                _ => "unknown hypervisor",
            };
            return (
                name.to_string(),
                format!("CPUID hypervisor bit set, signature {sig:?}"),
            );
        }
    }
    if cpuinfo.contains(" hypervisor") {
        return (
            "unknown hypervisor".into(),
            "hypervisor flag in /proc/cpuinfo".into(),
        );
    }
    if let Some(v) = read_trim("/sys/class/dmi/id/sys_vendor") {
        for (needle, name) in [
            ("QEMU", "qemu"),
            ("VMware", "vmware"),
            ("Xen", "xen"),
            ("innotek", "virtualbox"),
        ] {
            if v.contains(needle) {
                return (name.into(), format!("DMI vendor {v:?}"));
            }
        }
    }
    (
        "none".into(),
        "no hypervisor bit in CPUID, no known DMI vendor".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    fn detect_fills_the_basics() {
        let h = HostInfo::detect();
        assert!(h.cpus >= 1 && h.memory_kib > 0 && !h.kernel.trim().is_empty());
    }
}
