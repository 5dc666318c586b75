//! Reports rendered from a result document alone, so any run can be re-rendered later.

mod ab;
pub mod compare;
pub mod csv;
mod drift;
pub mod explain;
pub mod html;
pub mod markdown;
pub mod model;
pub(crate) mod scenario;
pub mod text;
mod view;

pub use model::Table;
pub use text::terminal;

/// A number with about four significant digits, without exponent for everyday magnitudes.
pub fn fmt_sig(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a >= 1e9 || (a > 0.0 && a < 1e-3) {
        return format!("{v:.3e}");
    }
    let decimals = if a >= 1000.0 {
        0
    } else if a >= 100.0 {
        1
    } else if a >= 10.0 {
        2
    } else {
        3
    };
    format!("{v:.decimals$}")
}

/// A ratio as a percentage: `97.3%`.
pub fn fmt_pct(r: f64) -> String {
    format!("{:.1}%", r * 100.0)
}
