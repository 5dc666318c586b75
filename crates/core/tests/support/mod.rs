//! What the integration tests of hvbench-core share.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use hvbench_core::agent::AgentBinary;

/// The agent built from this tree, with this test's profile: `HVBENCH_AGENT`, or
/// `cargo build -p hvbench --bin hvbench-agent` (a no-op when `cargo test --workspace` built it
/// already; cargo releases the build lock before it runs tests, so this does not block).
pub fn agent() -> AgentBinary {
    static AGENT: OnceLock<AgentBinary> = OnceLock::new();
    AGENT
        .get_or_init(|| {
            if std::env::var_os("HVBENCH_AGENT").is_some() {
                return AgentBinary::locate().expect("HVBENCH_AGENT names a static agent");
            }
            let exe = std::env::current_exe().unwrap();
            // target/<triple>/<profile>/deps/<test>-<hash>
            let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.current_dir(&workspace).args([
                "build",
                "--quiet",
                "-p",
                "hvbench",
                "--bin",
                "hvbench-agent",
            ]);
            if release {
                cmd.arg("--release");
            }
            let out = cmd.output().expect("run cargo build");
            assert!(
                out.status.success(),
                "cargo build -p hvbench --bin hvbench-agent failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            AgentBinary::from_path(&profile_dir.join("hvbench-agent"))
                .expect("the agent just built")
        })
        .clone()
}
