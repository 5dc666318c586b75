//! The QEMU backends: [`QemuTcg`] (dynamic binary translation), [`QemuKvm`] (hardware
//! virtualization, offered only after a probe boot proves it works here) and [`QemuCustom`] (a
//! configuration adjusted before launch, for tests and experiments).

use std::sync::OnceLock;
use std::time::Duration;

use super::probe::{check_dev_kvm, probe_boot, probe_detail};
use super::{launch, Accel, QemuConfig, KVM_PROBE_TIMEOUT};
use crate::agent::AgentBinary;
use crate::backends::{Availability, Backend, BackendError, GuestSpec, Launched};

/// A QEMU backend whose configuration is adjusted before launch: for tests (a guest that
/// hangs) and for experiments (another machine type). Not in [`crate::backends::all`].
pub struct QemuCustom {
    pub name: &'static str,
    pub accel: Accel,
    pub adjust: fn(&mut QemuConfig),
}

impl Backend for QemuCustom {
    fn name(&self) -> &'static str {
        self.name
    }

    fn technique(&self) -> &'static str {
        "QEMU with an adjusted configuration"
    }

    fn probe(&self, agent: &AgentBinary) -> Availability {
        match probe_detail(agent) {
            Ok(detail) => Availability::Available { detail },
            Err(a) => a,
        }
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        launch(self.accel, self.name, spec, self.adjust)
    }
}

/// Full-system emulation by dynamic binary translation.
pub struct QemuTcg;

impl Backend for QemuTcg {
    fn name(&self) -> &'static str {
        "qemu-tcg"
    }

    fn technique(&self) -> &'static str {
        "full-system emulation by dynamic binary translation (QEMU TCG)"
    }

    fn probe(&self, agent: &AgentBinary) -> Availability {
        static PROBED: OnceLock<Availability> = OnceLock::new();
        PROBED
            .get_or_init(|| match probe_detail(agent) {
                Ok(detail) => Availability::Available {
                    detail: format!("{detail}, -cpu max"),
                },
                Err(a) => a,
            })
            .clone()
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        launch(Accel::Tcg, self.name(), spec, |_| {})
    }

    fn hello_timeout(&self) -> Duration {
        // An emulated boot takes 2-3 s alone here, but many guests at once share the cores.
        Duration::from_secs(60)
    }
}

/// Hardware-assisted virtualization, after a probe boot proved it works here.
pub struct QemuKvm;

impl QemuKvm {
    fn probe_uncached(&self, agent: &AgentBinary) -> Availability {
        if let Err(a) = check_dev_kvm() {
            return a;
        }
        let detail = match probe_detail(agent) {
            Ok(d) => d,
            Err(a) => return a,
        };
        match probe_boot(self, agent) {
            Ok(boot) => Availability::Available {
                detail: format!(
                    "{detail}, -cpu host, a probe guest said hello in {} ms",
                    boot.as_millis()
                ),
            },
            Err(why) => Availability::Unavailable {
                reason: format!(
                    "/dev/kvm is present but a probe guest did not boot within {} s: {why}",
                    KVM_PROBE_TIMEOUT.as_secs()
                ),
                hint: "KVM cannot run guests on this host (nested virtualization off or \
                       broken): use qemu-tcg, or a host with working VT-x/AMD-V"
                    .into(),
            },
        }
    }
}

impl Backend for QemuKvm {
    fn name(&self) -> &'static str {
        "qemu-kvm"
    }

    fn technique(&self) -> &'static str {
        "hardware-assisted virtualization (QEMU with KVM)"
    }

    fn probe(&self, agent: &AgentBinary) -> Availability {
        static PROBED: OnceLock<Availability> = OnceLock::new();
        PROBED.get_or_init(|| self.probe_uncached(agent)).clone()
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        launch(Accel::Kvm, self.name(), spec, |_| {})
    }
}
