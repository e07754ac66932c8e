//! A step job: `h₀ = BLAKE3(seed)`, `hᵢ₊₁ = BLAKE3(hᵢ)`, `rounds` hashes per step.
//!
//! Input (text): `STEPS ROUNDS SEED…`, for example `1000 2000 aqueduct`. Missing numbers take
//! the defaults (1000 steps of 2000 hashes). Output: a line with the final hash.

#![cfg_attr(target_arch = "wasm32", no_std)]

use core::fmt::Write;
use job_abi::Text;

pub const DEFAULT_STEPS: u64 = 1000;
pub const DEFAULT_ROUNDS: u64 = 2000;

/// The whole job state; it lives in linear memory between steps.
#[derive(Clone)]
pub struct Chain {
    pub hash: [u8; 32],
    pub done_steps: u64,
    pub steps: u64,
    pub rounds: u64,
}

impl Chain {
    pub fn new(input: &[u8]) -> Chain {
        let ([steps, rounds], seed) = job_abi::numbers::<2>(input);
        Chain {
            hash: *blake3::hash(seed).as_bytes(),
            done_steps: 0,
            steps: steps.unwrap_or(DEFAULT_STEPS).clamp(1, 60_000),
            rounds: rounds.unwrap_or(DEFAULT_ROUNDS).clamp(1, 10_000_000),
        }
    }

    /// One step; true when the chain is complete.
    pub fn step(&mut self) -> bool {
        for _ in 0..self.rounds {
            self.hash = *blake3::hash(&self.hash).as_bytes();
        }
        self.done_steps += 1;
        self.done_steps >= self.steps
    }

    pub fn report(&self) -> Text<160> {
        let mut text = Text::default();
        let _ = write!(text, "after {} hashes: ", self.done_steps * self.rounds);
        for b in self.hash {
            let _ = write!(text, "{b:02x}");
        }
        text
    }
}

/// The module's exports (the job ABI); only in the wasm build, so that the native build
/// (tests, benchmarks) can link several examples together.
#[cfg(target_arch = "wasm32")]
mod exports {
    use super::*;
    use job_abi::JobCell;

    static STATE: JobCell<Option<Chain>> = JobCell::new(None);

    #[unsafe(no_mangle)]
    pub extern "C" fn alloc(len: usize) -> *mut u8 {
        job_abi::alloc(len)
    }

    /// # Safety
    /// `ptr..ptr + len` is the input the host wrote into memory from `alloc`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn init(ptr: *const u8, len: usize) {
        // SAFETY: see the function's contract.
        let input = unsafe { job_abi::bytes(ptr, len) };
        STATE.with(|s| *s = Some(Chain::new(input)));
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn step() -> i32 {
        STATE.with(|s| match s {
            Some(chain) => i32::from(chain.step()),
            None => 1,
        })
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn output() -> i64 {
        STATE.with(|s| match s {
            Some(chain) => job_abi::output(chain.report().as_bytes()),
            None => job_abi::output(b"not initialised"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_is_the_iterated_hash() {
        let mut chain = Chain::new(b"2 3 seed");
        assert_eq!((chain.steps, chain.rounds), (2, 3));
        assert!(!chain.step());
        assert!(chain.step());
        let mut h = *blake3::hash(b"seed").as_bytes();
        for _ in 0..6 {
            h = *blake3::hash(&h).as_bytes();
        }
        assert_eq!(chain.hash, h);
        assert!(
            std::str::from_utf8(chain.report().as_bytes())
                .is_ok_and(|s| s.starts_with("after 6 hashes: "))
        );
    }
}
