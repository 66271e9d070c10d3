//! Random numbers: a hand-written xoshiro256** generator, seeded through SplitMix64, with one stream per purpose.

/// The increment of SplitMix64: 2^64 divided by the golden ratio.
pub(super) const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Returns the SplitMix64 finalizer of `z` (Steele, Lea and Flood, 2014): a bijective mix of
/// 64 bits.
pub(super) const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Streams of random numbers, the second word of every key.
pub(super) const STREAM_PROFILE: u64 = 1;
pub(super) const STREAM_CUSTOMER_DAY: u64 = 2;
pub(super) const STREAM_SHARED_DAY: u64 = 3;
pub(super) const STREAM_NOISE: u64 = 4;
pub(super) const STREAM_SWING: u64 = 5;

/// xoshiro256** 1.0 (Blackman and Vigna, 2018, public domain): 256 bits of state, period
/// 2^256 - 1, passes BigCrush. Written out here because `rand`'s `StdRng` may change between
/// versions, and the ledger must not.
#[derive(Debug, Clone)]
pub(super) struct Rng {
    pub(super) state: [u64; 4],
}

impl Rng {
    /// Creates the stream of `key`: the key is hashed with the SplitMix64 finalizer, and the
    /// state is the next four outputs of SplitMix64 from that hash, as the authors recommend.
    pub(super) fn new(key: &[u64]) -> Rng {
        // "marginst" in ASCII: any constant works, this one is recognisable.
        let mut seed: u64 = 0x6D61_7267_696E_7374;
        for word in key {
            seed = mix64(seed.wrapping_add(GOLDEN_GAMMA) ^ word);
        }
        let mut state = [0; 4];
        for slot in &mut state {
            seed = seed.wrapping_add(GOLDEN_GAMMA);
            *slot = mix64(seed);
        }
        Rng { state }
    }

    pub(super) fn next_u64(&mut self) -> u64 {
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

    /// Returns a number in `0..n` (Lemire's multiply-shift; the bias, below n/2^64, is
    /// irrelevant here). `n` must not be zero.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "below(0) has no value to return");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Returns a number in `low..high`; `low < high`.
    pub(super) fn range(&mut self, low: i64, high: i64) -> i64 {
        debug_assert!(low < high, "empty range {low}..{high}");
        low + self.below(high.abs_diff(low)) as i64
    }

    /// Returns true with probability `per_mille / 1000`.
    pub(super) fn per_mille(&mut self, per_mille: u64) -> bool {
        self.below(1_000) < per_mille
    }

    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}
