//! `hvbench doctor`: which backends can run here, why not, and how to fix it.

use std::process::ExitCode;

use clap::Args;
use hvbench_core::agent::AgentBinary;
use hvbench_core::backends::{self, Availability};
use hvbench_core::report::Table;

use super::backend_args::BackendArgs;

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    backend: BackendArgs,
}

/// Exit code 0 even when some backends are unavailable: that is information, not failure.
pub fn doctor(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let agent = AgentBinary::locate()?;
    let host = hvbench_core::host::HostInfo::detect();
    println!(
        "host: {} · {} CPUs · kernel {} · {}",
        host.cpu_model,
        host.cpus,
        host.kernel.split_whitespace().next().unwrap_or(""),
        if host.virtualization == "none" {
            "bare metal".to_string()
        } else {
            format!("runs under {} (guests are nested)", host.virtualization)
        }
    );
    println!(
        "agent: {} ({} bytes, sha256 {})\n",
        agent.path.display(),
        agent.size,
        &agent.sha256[..16]
    );
    let all = backends::all_with(&args.backend.options());
    let results = super::run::probe_all(all, &agent);
    let mut t = Table::new(
        &[
            "Backend",
            "Technique",
            "Status",
            "Probe",
            "Detail / reason",
            "Fix",
        ],
        &[false, false, false, true, false, false],
    );
    for (b, a, took) in results {
        let took = format!("{:.1} s", took.as_secs_f64());
        match a {
            Availability::Available { detail } => t.row(vec![
                b.name().into(),
                b.technique().into(),
                "available".into(),
                took,
                detail,
                String::new(),
            ]),
            Availability::Unavailable { reason, hint } => t.row(vec![
                b.name().into(),
                b.technique().into(),
                "unavailable".into(),
                took,
                reason,
                hint,
            ]),
        }
    }
    print!("{}", t.render());
    print!("\n{}", device_models());
    Ok(ExitCode::SUCCESS)
}

/// Which kernel a QEMU guest would boot for each device model (`--disk-model`, `--nic`): the
/// emulated models need drivers the cloud kernel does not have.
fn device_models() -> String {
    use hvbench_core::devices::{DiskModel, NicModel};
    use hvbench_core::image::KernelImage;
    let mut t = Table::new(
        &["Device model", "Option", "Guest kernel", "Fix"],
        &[false; 4],
    );
    let mut rows: Vec<(String, String, &[&str])> = Vec::new();
    for m in [DiskModel::Virtio, DiskModel::Ide, DiskModel::Ahci] {
        rows.push((
            format!("disk {}", m.name()),
            format!("--disk-model {}", m.name()),
            m.modules(),
        ));
    }
    for n in [NicModel::Virtio, NicModel::E1000] {
        rows.push((
            format!("nic {}", n.name()),
            format!("--nic {}", n.name()),
            n.modules(),
        ));
    }
    for (name, option, drivers) in rows {
        let (kernel, fix) = match KernelImage::find_with_drivers(None, drivers) {
            Ok(k) => (k.version, String::new()),
            Err(e) => ("none".to_string(), e.to_string()),
        };
        t.row(vec![name, option, kernel, fix]);
    }
    format!(
        "Device models of QEMU guests, and the kernel each boots\n{}",
        t.render()
    )
}
