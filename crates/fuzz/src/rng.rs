//! A small deterministic pseudo-random generator (xorshift64*), seedable, with no dependency.
//!
//! Every execution of a campaign gets its own generator derived from the campaign seed and the
//! execution's number ([`Rng::for_execution`]), so an execution does the same thing whatever
//! the number of jobs or the chunk that ran it.

/// xorshift64* generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed` (a zero seed, which xorshift cannot leave, is replaced
    /// by a fixed non-zero one).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The generator of execution `execution` of a campaign seeded with `seed`.
    pub fn for_execution(seed: u64, execution: u64) -> Rng {
        Rng::new(splitmix64(seed ^ splitmix64(execution)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True once in `n` times on average.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A random element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The splitmix64 finaliser: spreads consecutive numbers over the whole 64-bit space.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_spread() {
        let a: Vec<u64> = (0..4)
            .map(|e| Rng::for_execution(1, e).next_u64())
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|e| Rng::for_execution(1, e).next_u64())
            .collect();
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0] != w[1]));
        assert_ne!(Rng::new(0).next_u64(), 0);
        let mut r = Rng::new(7);
        assert!((0..1000).all(|_| r.below(3) < 3));
        assert_eq!(r.below(0), 0);
    }
}
