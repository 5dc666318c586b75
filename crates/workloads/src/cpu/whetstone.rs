//! The Whetstone benchmark (Curnow and Wichmann, 1972), double precision, ported from Roy
//! Longbottom's C version (1996, the "official version approved by Harold Curnow", also the one
//! in UnixBench): its eight sections N1..N8 with their loop weights 12, 14, 345, 210, 32, 899,
//! 616, 93 (times `x100`), and the same constants, statements and procedures `pa`, `po`, `p3`.
//!
//! One iteration is one outer pass (`xtra` = 1) of that program at its standard `x100 = 100`,
//! which the program rates as 10 million Whetstone instructions (MWIPS = xtra × x100 / (10 ×
//! seconds)). The work is counted in Whetstone instructions, so the metric is MWIPS.
//!
//! Differences from the C, none of which changes a computed value:
//! - Longbottom runs section N1 ten times longer than counted (for MFLOPS accuracy) and divides
//!   its time by ten; we run it the counted number of times and time everything as one interval,
//!   which gives the same MWIPS.
//! - Constants and starting values pass through `black_box`, so the integer sections (N3, N4,
//!   N7), whose values repeat, cannot be folded away.
//! - `pa`, `po` and `p3` are `#[inline(never)]`: sections N2, N6 and N7 are meant to measure
//!   calls ("array as parameter", "procedure calls", "array references").

use std::hint::black_box;
use std::time::Instant;

use crate::{Outcome, Params, WorkloadError};

/// The loop multiplier of the standard program.
const X100: u64 = 100;
/// Whetstone instructions in one outer pass per unit of `x100`.
const WHETSTONES_PER_X100: u64 = 100_000;

/// What each section leaves behind (Longbottom's "Result" column): N1 `e1[3]`, N2 `e1[3]`,
/// N3 `j`, N4 `e1[0] + e1[1]`, N5 `y`, N6 `z`, N7 `e1[2]`, N8 `x`.
type SectionResults = [f64; 8];

/// `cpu.whetstone`: one iteration is 10 million Whetstone instructions.
pub(super) fn run(_params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let xtra = super::check_iterations(iterations)?;
    let x100 = black_box(X100);
    let start = Instant::now();
    let results = black_box(whetstones(xtra, x100, 1));
    let elapsed = start.elapsed();
    check(&results).map_err(|e| WorkloadError::Failed(format!("Whetstone check: {e}")))?;
    let work = xtra as f64 * (X100 * WHETSTONES_PER_X100) as f64;
    Ok(Outcome::new(work, elapsed))
}

/// The results must be finite and where the benchmark keeps them: the integer sections exactly
/// (their state repeats with period 1 or 2, and every loop count is even), the floating-point
/// ones in the narrow ranges the alternating `t = 1 - t` keeps them in.
fn check(r: &SectionResults) -> Result<(), String> {
    let ranges: [(&str, f64, f64); 8] = [
        ("N1", -2.0, 2.0),
        ("N2", -2.0, 2.0),
        ("N3", 1.0, 1.0),
        ("N4", 12.0, 12.0),
        ("N5", 0.0, 1.0),
        ("N6", 0.9, 1.1),
        ("N7", 3.0, 3.0),
        ("N8", 0.75, 1.0),
    ];
    for (value, (name, lo, hi)) in r.iter().zip(ranges) {
        if !value.is_finite() || *value < lo || *value > hi {
            return Err(format!("section {name} left {value}, expected {lo}..={hi}"));
        }
    }
    Ok(())
}

/// Longbottom's `whetstones(xtra, x100, calibrate)`, less the timing and printing; `n1mult` is
/// his extra factor on section N1 (10 in his program, 1 in the workload).
fn whetstones(xtra: u64, x100: u64, n1mult: u64) -> SectionResults {
    let mut results = [0.0; 8];

    let mut t: f64 = black_box(0.499_999_75);
    let t0 = t;
    let t1: f64 = black_box(0.500_000_25);
    let t2: f64 = black_box(2.0);

    let n1 = 12 * x100;
    let n2 = 14 * x100;
    let n3 = 345 * x100;
    let n4 = 210 * x100;
    let n5 = 32 * x100;
    let n6 = 899 * x100;
    let n7 = 616 * x100;
    let n8 = 93 * x100;

    // Section 1, array elements
    let mut e1: [f64; 4] = black_box([1.0, -1.0, -1.0, -1.0]);
    for _ in 0..xtra {
        for _ in 0..n1 * n1mult {
            e1[0] = (e1[0] + e1[1] + e1[2] - e1[3]) * t;
            e1[1] = (e1[0] + e1[1] - e1[2] + e1[3]) * t;
            e1[2] = (e1[0] - e1[1] + e1[2] + e1[3]) * t;
            e1[3] = (-e1[0] + e1[1] + e1[2] + e1[3]) * t;
        }
        t = 1.0 - t;
    }
    t = t0;
    results[0] = e1[3];

    // Section 2, array as parameter
    for _ in 0..xtra {
        for _ in 0..n2 {
            pa(&mut e1, t, t2);
        }
        t = 1.0 - t;
    }
    t = t0;
    results[1] = e1[3];

    // Section 3, conditional jumps
    let mut j: i64 = black_box(1);
    for _ in 0..xtra {
        for _ in 0..n3 {
            j = if j == 1 { 2 } else { 3 };
            j = if j > 2 { 0 } else { 1 };
            j = if j < 1 { 1 } else { 0 };
        }
    }
    results[2] = j as f64;

    // Section 4, integer arithmetic
    let (mut j, mut k, mut l): (i64, i64, i64) = black_box((1, 2, 3));
    for _ in 0..xtra {
        for _ in 0..n4 {
            j = j * (k - j) * (l - k);
            k = l * k - (l - j) * k;
            l = (l - k) * (k + j);
            e1[(l - 2) as usize] = (j + k + l) as f64;
            e1[(k - 2) as usize] = (j * k * l) as f64;
        }
    }
    results[3] = e1[0] + e1[1];

    // Section 5, trig functions (the C loop runs n5 - 1 times, and so does this one)
    let (mut x, mut y): (f64, f64) = black_box((0.5, 0.5));
    for _ in 0..xtra {
        for _ in 1..n5 {
            x = t * (t2 * x.sin() * x.cos() / ((x + y).cos() + (x - y).cos() - 1.0)).atan();
            y = t * (t2 * y.sin() * y.cos() / ((x + y).cos() + (x - y).cos() - 1.0)).atan();
        }
        t = 1.0 - t;
    }
    t = t0;
    results[4] = y;

    // Section 6, procedure calls
    let (mut x, mut y, mut z): (f64, f64, f64) = black_box((1.0, 1.0, 1.0));
    for _ in 0..xtra {
        for _ in 0..n6 {
            p3(&mut x, &mut y, &mut z, t, t1, t2);
        }
    }
    results[5] = z;

    // Section 7, array references
    let (j, k, l): (usize, usize, usize) = black_box((0, 1, 2));
    e1[0] = 1.0;
    e1[1] = 2.0;
    e1[2] = 3.0;
    black_box(&mut e1);
    for _ in 0..xtra {
        for _ in 0..n7 {
            po(&mut e1, j, k, l);
        }
    }
    results[6] = e1[2];

    // Section 8, standard functions
    let mut x: f64 = black_box(0.75);
    for _ in 0..xtra {
        for _ in 0..n8 {
            x = (x.ln() / t1).exp().sqrt();
        }
    }
    results[7] = x;

    results
}

#[inline(never)]
fn pa(e: &mut [f64; 4], t: f64, t2: f64) {
    for _ in 0..6 {
        e[0] = (e[0] + e[1] + e[2] - e[3]) * t;
        e[1] = (e[0] + e[1] - e[2] + e[3]) * t;
        e[2] = (e[0] - e[1] + e[2] + e[3]) * t;
        e[3] = (-e[0] + e[1] + e[2] + e[3]) / t2;
    }
}

#[inline(never)]
fn po(e1: &mut [f64; 4], j: usize, k: usize, l: usize) {
    e1[j] = e1[k];
    e1[k] = e1[l];
    e1[l] = e1[j];
}

#[inline(never)]
fn p3(x: &mut f64, y: &mut f64, z: &mut f64, t: f64, t1: f64, t2: f64) {
    *x = *y;
    *y = *z;
    *x = t * (*x + *y);
    *y = t1 * (*x + *y);
    *z = (*x + *y) / t2;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Longbottom's published double-precision results (one outer pass, x100 = 100, section N1
    /// ten times longer), from the comments of his `whets.c`.
    const PUBLISHED: SectionResults = [
        -1.123_982_556_673_919,
        -1.121_870_798_892_844,
        1.0,
        12.0,
        0.499_029_372_815_151_4,
        0.999_999_878_908_028_2,
        3.0,
        0.751_001_630_184_578_7,
    ];

    #[test]
    fn reproduces_the_published_results() {
        let got = whetstones(1, 100, 10);
        for (i, (g, p)) in got.iter().zip(PUBLISHED).enumerate() {
            let rel = ((g - p) / p).abs();
            assert!(rel < 1e-9, "section N{}: got {g}, published {p}", i + 1);
        }
    }

    #[test]
    fn results_stay_in_range_over_many_passes() {
        for xtra in [1, 2, 3, 7] {
            check(&whetstones(xtra, 10, 1)).unwrap();
            check(&whetstones(xtra, 100, 1)).unwrap();
        }
    }
}
