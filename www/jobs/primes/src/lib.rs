//! A one-shot job: counts the primes below `N` with a sieve of Eratosthenes.
//!
//! Input (text): `N`, for example `2000000` (default; at most 50 000 000). Output: a line with
//! the count and the largest prime found.

#![cfg_attr(target_arch = "wasm32", no_std)]

use core::fmt::Write;
use job_abi::Text;

pub const DEFAULT_LIMIT: u64 = 2_000_000;
pub const MAX_LIMIT: u64 = 50_000_000;

/// Sieves `sieve` (one byte per number, zeroed, at least `limit` long) and returns the number
/// of primes below `limit` and the largest.
pub fn sieve(limit: usize, sieve: &mut [u8]) -> (u64, u64) {
    let mut count = 0;
    let mut largest = 0;
    let limit = limit.min(sieve.len());
    let mut i = 2;
    while i < limit {
        if sieve[i] == 0 {
            count += 1;
            largest = i as u64;
            // i² may not fit in 32 bits: only sieve when it is below the limit.
            let mut j = if i <= (limit - 1) / i { i * i } else { limit };
            while j < limit {
                sieve[j] = 1;
                j += i;
            }
        }
        i += 1;
    }
    (count, largest)
}

pub fn parse(input: &[u8]) -> usize {
    let ([n], _) = job_abi::numbers::<1>(input);
    n.unwrap_or(DEFAULT_LIMIT).clamp(2, MAX_LIMIT) as usize
}

pub fn report(limit: usize, (count, largest): (u64, u64)) -> Text<120> {
    let mut text = Text::default();
    let _ = write!(text, "{count} primes below {limit} (largest {largest})");
    text
}

/// The module's exports (the job ABI); only in the wasm build, so that the native build
/// (tests, benchmarks) can link several examples together.
#[cfg(target_arch = "wasm32")]
mod exports {
    use super::*;

    #[unsafe(no_mangle)]
    pub extern "C" fn alloc(len: usize) -> *mut u8 {
        job_abi::alloc(len)
    }

    /// # Safety
    /// `ptr..ptr + len` is the input the host wrote into memory from `alloc`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn run(ptr: *const u8, len: usize) -> i64 {
        // SAFETY: see the function's contract.
        let limit = parse(unsafe { job_abi::bytes(ptr, len) });
        let buf = job_abi::alloc(limit);
        if buf.is_null() {
            return job_abi::output(b"out of memory");
        }
        // SAFETY: `alloc` returned `limit` zeroed bytes that nothing else uses.
        let sieve_bytes = unsafe { core::slice::from_raw_parts_mut(buf, limit) };
        let found = sieve(limit, sieve_bytes);
        job_abi::output(report(limit, found).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_values() {
        let mut buf = vec![0u8; 100];
        assert_eq!(sieve(100, &mut buf), (25, 97));
        let mut buf = vec![0u8; 1_000_000];
        assert_eq!(sieve(1_000_000, &mut buf), (78_498, 999_983));
        assert_eq!(parse(b"junk"), DEFAULT_LIMIT as usize);
    }
}
