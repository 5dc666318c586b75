//! Finding the agent binary hvbench was built with.
//!
//! The same file runs on the host and in every guest, so that ratios compare like with like.
//! It is looked up next to the running `hvbench` (cargo puts both in one target directory), or
//! taken from `HVBENCH_AGENT`. Its SHA-256 goes into the result document.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The agent executable and its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentBinary {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// Why the agent could not be found.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("hvbench-agent not found (looked in {looked}); build it with `cargo build --release --workspace`, or point HVBENCH_AGENT at it")]
    NotFound { looked: String },
    #[error("cannot read the agent {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a static executable ({reason}); guests have no dynamic loader: build with the workspace's .cargo/config.toml (crt-static, explicit --target)")]
    NotStatic { path: PathBuf, reason: String },
}

impl AgentBinary {
    /// Finds the agent: `HVBENCH_AGENT`, else next to the current executable (or its parent,
    /// for test binaries in `deps/`).
    pub fn locate() -> Result<AgentBinary, AgentError> {
        if let Some(p) = std::env::var_os("HVBENCH_AGENT") {
            return Self::from_path(Path::new(&p));
        }
        let exe = std::env::current_exe().map_err(|e| AgentError::NotFound {
            looked: e.to_string(),
        })?;
        let mut looked = Vec::new();
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("hvbench-agent");
            if candidate.is_file() {
                return Self::from_path(&candidate);
            }
            looked.push(candidate.display().to_string());
        }
        Err(AgentError::NotFound {
            looked: looked.join(", "),
        })
    }

    /// Reads and checks a given agent file.
    pub fn from_path(path: &Path) -> Result<AgentBinary, AgentError> {
        let bytes = std::fs::read(path).map_err(|e| AgentError::Unreadable {
            path: path.into(),
            source: e,
        })?;
        check_static(&bytes).map_err(|reason| AgentError::NotStatic {
            path: path.into(),
            reason,
        })?;
        let sha256 = format!("{:x}", Sha256::digest(&bytes));
        Ok(AgentBinary {
            path: path.to_path_buf(),
            sha256,
            size: bytes.len() as u64,
        })
    }
}

/// An ELF file with no PT_INTERP program header runs without a dynamic loader.
fn check_static(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let phoff = u64_at(32);
    let phentsize = u16_at(54);
    let phnum = u16_at(56);
    for i in 0..phnum {
        let off = phoff.saturating_add(i.saturating_mul(phentsize));
        if off + 4 > bytes.len() {
            return Err("truncated program headers".into());
        }
        let p_type =
            u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]]);
        if p_type == 3 {
            return Err("it has an interpreter (PT_INTERP): dynamically linked".into());
        }
    }
    Ok(())
}
