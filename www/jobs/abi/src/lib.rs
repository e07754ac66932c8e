//! Helpers shared by the example job modules (see "Job modules" in the README).
//!
//! A job module imports nothing, so it brings its own allocator. This one hands out memory
//! from a small static arena and, once that is used up, from pages added with `memory.grow`.
//! Nothing is ever freed: a job instance lives for one job.

#![cfg_attr(target_arch = "wasm32", no_std)]

use core::cell::UnsafeCell;

/// A value in a static that only the job's single thread touches.
pub struct JobCell<T>(UnsafeCell<T>);

// SAFETY: job modules are single-threaded (threads are refused by the profile), and on native
// targets the examples only use `JobCell` from their wasm entry points, which do not exist
// there.
unsafe impl<T> Sync for JobCell<T> {}

impl<T> JobCell<T> {
    pub const fn new(value: T) -> Self {
        JobCell(UnsafeCell::new(value))
    }

    /// Runs `f` with exclusive access. Must not be re-entered from inside `f`.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: single-threaded, and `f` gets the only reference for its duration.
        f(unsafe { &mut *self.0.get() })
    }
}

const ARENA: usize = 16 * 1024;

struct Arena {
    bytes: [u8; ARENA],
    used: usize,
}

static HEAP: JobCell<Arena> = JobCell::new(Arena {
    bytes: [0; ARENA],
    used: 0,
});

/// Allocates `len` bytes (8-byte aligned), zeroed. Returns null when memory cannot grow.
pub fn alloc(len: usize) -> *mut u8 {
    let len = len.div_ceil(8) * 8;
    let from_arena = HEAP.with(|heap| {
        if heap.used + len <= ARENA {
            let ptr = heap.bytes[heap.used..].as_mut_ptr();
            heap.used += len;
            Some(ptr)
        } else {
            None
        }
    });
    if let Some(ptr) = from_arena {
        return ptr;
    }
    grow(len)
}

#[cfg(target_arch = "wasm32")]
fn grow(len: usize) -> *mut u8 {
    let pages = len.div_ceil(65_536).max(1);
    let old = core::arch::wasm32::memory_grow(0, pages);
    if old == usize::MAX {
        return core::ptr::null_mut();
    }
    (old * 65_536) as *mut u8
}

#[cfg(not(target_arch = "wasm32"))]
fn grow(len: usize) -> *mut u8 {
    // Natively (tests, benchmarks) the examples use Vec buffers; this only keeps `alloc` total.
    Box::leak(vec![0u8; len].into_boxed_slice()).as_mut_ptr()
}

/// Borrows `len` bytes at `ptr` handed to an entry point.
///
/// # Safety
/// `ptr..ptr + len` must be memory the caller owns, as it is for the input the host wrote
/// into a buffer from [`alloc`].
pub unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts(ptr, len) }
}

/// Packs an output location the way `run` and `output` return it: `ptr << 32 | len`.
pub fn pack(ptr: *const u8, len: usize) -> i64 {
    (((ptr as usize as u64) << 32) | (len as u64 & 0xffff_ffff)) as i64
}

/// Copies `data` into fresh job memory and packs its location.
pub fn output(data: &[u8]) -> i64 {
    let ptr = alloc(data.len());
    if ptr.is_null() {
        return pack(core::ptr::null(), 0);
    }
    // SAFETY: `alloc` returned `data.len()` writable bytes.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len()) };
    pack(ptr, data.len())
}

/// A fixed-capacity text buffer for outputs, without an allocator.
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Text {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Text<N> {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> core::fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(core::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Parses up to `N` unsigned numbers separated by whitespace from the start of `input`;
/// returns them and the rest of the input after them.
pub fn numbers<const N: usize>(input: &[u8]) -> ([Option<u64>; N], &[u8]) {
    let mut out = [None; N];
    let mut rest = input;
    for slot in out.iter_mut() {
        let trimmed = trim_start(rest);
        let digits = trimmed.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 19 {
            break;
        }
        let mut value: u64 = 0;
        for b in &trimmed[..digits] {
            value = value * 10 + u64::from(b - b'0');
        }
        *slot = Some(value);
        rest = &trimmed[digits..];
    }
    (out, trim_start(rest))
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let skip = bytes.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &bytes[skip..]
}

#[cfg(all(target_arch = "wasm32", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_and_leave_the_rest() {
        let (n, rest) = numbers::<2>(b"  12 345 seed text");
        assert_eq!(n, [Some(12), Some(345)]);
        assert_eq!(rest, b"seed text");
        let (n, rest) = numbers::<2>(b"abc");
        assert_eq!(n, [None, None]);
        assert_eq!(rest, b"abc");
    }

    #[test]
    fn pack_puts_the_pointer_high() {
        assert_eq!(pack(0x10 as *const u8, 5), (0x10i64 << 32) | 5);
    }
}
