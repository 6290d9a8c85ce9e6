//! Dropout masks drawn on all cores. Flex draws `random_like(Bernoulli)` on
//! one thread (about 8 ms for one batch-64 layer of this network); here
//! each block of the mask has its own small generator keyed by the call and
//! the block, so the mask is the same whatever the number of threads, and
//! [`seed`] makes a run (and its resume) repeatable, as `B::seed` does for
//! Burn's generator.

use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// Per-call keys: seeded, then advanced once per mask.
static NEXT_KEY: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);

const BLOCK: usize = 4096;

/// Tests that draw from the shared key counter take this, so that one
/// test's draws never land between another's `seed` and its masks.
#[cfg(test)]
pub(crate) static TEST_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Seeds the dropout masks drawn after this call.
pub fn seed(seed: u64) {
    NEXT_KEY.store(splitmix(seed), Ordering::SeqCst);
}

/// `len` values, each `1 / keep` with probability `keep`, else 0.
pub(crate) fn mask(len: usize, keep: f64) -> Vec<f32> {
    let key = NEXT_KEY.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst);
    let threshold = (keep * 4_294_967_296.0).min(u32::MAX as f64) as u64;
    let scale = (1.0 / keep) as f32;
    let mut out = vec![0f32; len];
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(block, out)| {
            let mut state = splitmix(key ^ (block as u64).wrapping_mul(0xd1b5_4a32_d192_ed03));
            for pair in out.chunks_mut(2) {
                state = splitmix(state);
                for (i, v) in pair.iter_mut().enumerate() {
                    let bits = (state >> (32 * i)) & 0xffff_ffff;
                    *v = if bits < threshold { scale } else { 0.0 };
                }
            }
        });
    out
}

/// SplitMix64's output function: a cheap, well-mixed step.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_asked_share_scaled_and_repeats_after_seed() {
        let _global_rng = TEST_LOCK.lock();
        seed(7);
        let a = mask(200_000, 0.75);
        let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / a.len() as f64;
        assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        // The mean is preserved: E[mask] = 1.
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
        let b = mask(200_000, 0.75);
        assert_ne!(a, b, "each call draws a new mask");
        seed(7);
        assert_eq!(mask(200_000, 0.75), a, "the same seed gives the same masks");
    }
}
