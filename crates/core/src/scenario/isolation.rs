//! The `isolation` scenario (placeholder while it is written).
use crate::results::IsolationData;

/// The isolation table.
pub fn render(_d: &IsolationData) -> String {
    String::new()
}
