//! A one-shot job: renders the Mandelbrot set as a 24-bit BMP image (floating point, so it
//! exercises NaN canonicalization).
//!
//! Input (text): `WIDTH HEIGHT ITERATIONS`, for example `320 240 256` (the defaults; at most
//! 1024 × 1024 and 5000 iterations). Output: the BMP file.

#![cfg_attr(target_arch = "wasm32", no_std)]

pub struct Params {
    pub width: usize,
    pub height: usize,
    pub iterations: u32,
}

pub fn parse(input: &[u8]) -> Params {
    let ([w, h, it], _) = job_abi::numbers::<3>(input);
    Params {
        width: w.unwrap_or(320).clamp(8, 1024) as usize,
        height: h.unwrap_or(240).clamp(8, 1024) as usize,
        iterations: it.unwrap_or(256).clamp(1, 5000) as u32,
    }
}

const HEADER: usize = 54;

/// Bytes of the BMP for these dimensions (rows padded to 4 bytes).
pub fn image_len(p: &Params) -> usize {
    HEADER + row_len(p.width) * p.height
}

fn row_len(width: usize) -> usize {
    (width * 3).div_ceil(4) * 4
}

/// Renders into `out` (at least `image_len` bytes).
pub fn render(p: &Params, out: &mut [u8]) {
    let len = image_len(p);
    let out = &mut out[..len];
    out[0] = b'B';
    out[1] = b'M';
    put32(out, 2, len as u32);
    put32(out, 10, HEADER as u32);
    put32(out, 14, 40);
    put32(out, 18, p.width as u32);
    put32(out, 22, p.height as u32);
    out[26] = 1; // planes
    out[28] = 24; // bits per pixel
    put32(out, 34, (len - HEADER) as u32);
    let row = row_len(p.width);
    let (x0, x1, y0, y1) = (-2.2f64, 0.8f64, -1.2f64, 1.2f64);
    for py in 0..p.height {
        // BMP rows go bottom-up.
        let ci = y0 + (y1 - y0) * (py as f64 + 0.5) / p.height as f64;
        for px in 0..p.width {
            let cr = x0 + (x1 - x0) * (px as f64 + 0.5) / p.width as f64;
            let (mut zr, mut zi, mut n) = (0.0f64, 0.0f64, 0u32);
            while n < p.iterations && zr * zr + zi * zi <= 4.0 {
                let t = zr * zr - zi * zi + cr;
                zi = 2.0 * zr * zi + ci;
                zr = t;
                n += 1;
            }
            let at = HEADER + py * row + px * 3;
            let (b, g, r) = color(n, p.iterations);
            out[at] = b;
            out[at + 1] = g;
            out[at + 2] = r;
        }
    }
}

fn color(n: u32, max: u32) -> (u8, u8, u8) {
    if n >= max {
        return (20, 12, 8);
    }
    let t = n as f64 / max as f64;
    let s = 1.0 - t;
    let r = (9.0 * s * t * t * t * 255.0) as u8;
    let g = (15.0 * s * s * t * t * 255.0) as u8;
    let b = (8.5 * s * s * s * t * 255.0) as u8;
    (b, g, r)
}

fn put32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
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
        let params = parse(unsafe { job_abi::bytes(ptr, len) });
        let size = image_len(&params);
        let buf = job_abi::alloc(size);
        if buf.is_null() {
            return job_abi::output(b"out of memory");
        }
        // SAFETY: `alloc` returned `size` bytes that nothing else uses.
        let image = unsafe { core::slice::from_raw_parts_mut(buf, size) };
        render(&params, image);
        job_abi::pack(buf, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_bmp_with_the_set_in_the_middle() {
        let p = parse(b"64 48 100");
        let mut out = vec![0u8; image_len(&p)];
        render(&p, &mut out);
        assert_eq!(&out[..2], b"BM");
        assert_eq!(u32::from_le_bytes([out[18], out[19], out[20], out[21]]), 64);
        // A point inside the set (c = -0.5 + 0i, near the image centre) gets the inside colour.
        let row = row_len(64);
        let at = HEADER + 24 * row + 27 * 3;
        assert_eq!(&out[at..at + 3], &[20, 12, 8]);
    }
}
