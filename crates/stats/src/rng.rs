//! A small, seedable pseudo-random generator for resampling.
//!
//! Reports must be reproducible: the same samples must give the same confidence interval on any
//! machine and with any version of the dependency tree. So the generator is written here (a few
//! lines) rather than taken from an external crate whose streams may change between releases.
//! xoshiro256** is fast and statistically sound for simulation; splitmix64 expands a single
//! `u64` seed into its 256-bit state, as its authors recommend. Neither is cryptographic.

/// xoshiro256** (Blackman and Vigna), seeded by splitmix64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut splitmix = seed;
        let state = [
            splitmix64(&mut splitmix),
            splitmix64(&mut splitmix),
            splitmix64(&mut splitmix),
            splitmix64(&mut splitmix),
        ];
        // splitmix64 is a bijection of its counter, so four consecutive outputs are never all
        // zero (the one state xoshiro cannot leave).
        Rng { state }
    }

    /// Starts from a raw state, for checking against the reference implementation's vectors.
    #[cfg(test)]
    fn from_state(state: [u64; 4]) -> Rng {
        Rng { state }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniformly distributed integer in `0..n`, without modulo bias.
    ///
    /// Uses Lemire's multiply-and-reject method ("Fast random integer generation in an
    /// interval", 2019): one multiplication per draw and a division only on the rare path.
    ///
    /// # Panics
    ///
    /// If `n` is 0 (the range is empty).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0): the range 0..0 is empty");
        let n = n as u64;
        let mut product = u128::from(self.next_u64()) * u128::from(n);
        let mut low = product as u64;
        if low < n {
            // 2^64 mod n: the number of low values to reject so every result is equally likely.
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                product = u128::from(self.next_u64()) * u128::from(n);
                low = product as u64;
            }
        }
        (product >> 64) as usize
    }
}

fn splitmix64(counter: &mut u64) -> u64 {
    *counter = counter.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *counter;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference_outputs_for_seed_zero() {
        let mut counter = 0;
        let outputs: Vec<u64> = (0..3).map(|_| splitmix64(&mut counter)).collect();
        assert_eq!(
            outputs,
            [
                0xe220_a839_7b1d_cdaf,
                0x6e78_9e6a_a1b9_65f4,
                0x06c4_5d18_8009_454f
            ]
        );
    }

    #[test]
    fn xoshiro256starstar_matches_reference_outputs() {
        // Vectors from the reference implementation, state [1, 2, 3, 4].
        let mut rng = Rng::from_state([1, 2, 3, 4]);
        let expected: [u64; 10] = [
            11520,
            0,
            1509978240,
            1215971899390074240,
            1216172134540287360,
            607988272756665600,
            16172922978634559625,
            8476171486693032832,
            10595114339597558777,
            2904607092377533576,
        ];
        for want in expected {
            assert_eq!(rng.next_u64(), want);
        }
    }

    #[test]
    fn same_seed_gives_same_stream_and_different_seeds_differ() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::new(8);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn below_stays_in_range_and_hits_every_value() {
        let mut rng = Rng::new(1);
        for n in [1usize, 2, 3, 7, 10, 1000] {
            let mut seen = vec![0u32; n];
            for _ in 0..n * 200 {
                let k = rng.below(n);
                assert!(k < n);
                seen[k] += 1;
            }
            assert!(seen.iter().all(|&c| c > 0), "n = {n}: {seen:?}");
        }
    }

    #[test]
    fn below_is_roughly_uniform() {
        // 60 000 draws over 6 values: each count has standard deviation ~91 around 10 000.
        let mut rng = Rng::new(42);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[rng.below(6)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..=10_500).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn below_handles_the_largest_range() {
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            assert!(rng.below(usize::MAX) < usize::MAX);
        }
    }

    #[test]
    #[should_panic(expected = "empty")]
    fn below_zero_panics() {
        Rng::new(0).below(0);
    }
}
