//! Seeds and hashes that are stable across platforms and Rust versions.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The lab's random stream: ChaCha8, whose output is specified and platform-independent.
pub type LabRng = ChaCha8Rng;

/// FNV-1a 64-bit hash: stable, unlike `std`'s `DefaultHasher`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64 finaliser, to decorrelate derived seeds.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed for the named sub-stream of `seed` (e.g. `"prompts/train"`), so stages do not share
/// randomness and adding draws to one stage does not shift another.
pub fn derive_seed(seed: u64, stream: &str) -> u64 {
    mix(seed ^ mix(fnv1a(stream.as_bytes())))
}

/// A ChaCha8 stream for the named sub-stream of `seed`.
pub fn stream(seed: u64, name: &str) -> LabRng {
    LabRng::seed_from_u64(derive_seed(seed, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_are_stable_and_distinct() {
        // Pinned values: a change here changes every generated world.
        assert_eq!(fnv1a(b"reins"), fnv1a(b"reins"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        let a: u64 = stream(7, "a").random();
        let a2: u64 = stream(7, "a").random();
        let b: u64 = stream(7, "b").random();
        assert_eq!(a, a2);
        assert_ne!(a, b);
    }
}
