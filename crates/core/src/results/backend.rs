//! What the document records about a backend: whether it could run here, and the exact
//! configuration each guest ran with. Backends (`crate::backends`) make these; the document
//! only holds them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether a backend can run guests on this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Availability {
    Available {
        /// Versions and choices found by the probe (`qemu 7.2.0`, `platform systrap`).
        detail: String,
    },
    Unavailable {
        /// What is missing or broken.
        reason: String,
        /// The package or step that fixes it.
        hint: String,
    },
}

impl Availability {
    pub fn is_available(&self) -> bool {
        matches!(self, Availability::Available { .. })
    }
}

/// The exact configuration a guest ran with, recorded in the result so anyone can repeat it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendConfig {
    /// The command line that started the guest, one argument per element.
    pub command_line: Vec<String>,
    #[serde(default)]
    pub vcpus: Option<u32>,
    #[serde(default)]
    pub memory_mib: Option<u32>,
    /// Versions of the pieces involved (`qemu`, `kernel`, `runsc`).
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// Device models, cache modes, platform, accelerator: whatever shapes the numbers.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}
