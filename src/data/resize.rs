//! The one image resizer: Pillow's bicubic resampling, bit for bit (fixed-point weights, 8-bit
//! rounding between the passes), and torchvision's eval geometry (`Resize` + `CenterCrop`) on it.

use image::RgbImage;

/// A crop rectangle in pixels (torchvision's `i, j, h, w`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: u32,
    pub left: u32,
    pub height: u32,
    pub width: u32,
}

/// Fractional bits of Pillow's fixed-point weights (`32 - 8 - 2`: 8-bit values, 2 bits headroom).
const PRECISION_BITS: u32 = 22;

/// Pillow's bicubic kernel (a = -0.5), in double precision as Pillow evaluates it.
fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// One output pixel's taps: the first input index and the fixed-point weights.
type Taps = (usize, Vec<i32>);

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for one axis: the kernel is stretched
/// by the downscale factor, weights are normalised, then rounded half away from zero to 22 bits.
fn taps(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let (support, ss) = (2.0 * filterscale, 1.0 / filterscale);
    let one = f64::from(1u32 << PRECISION_BITS);
    (0..out_size)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            // C's `(int)` casts: truncation toward zero, then clamped to the image
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64)
                .min(in_size as i64)
                .max(lo as i64) as usize;
            let w: Vec<f64> = (lo..hi)
                .map(|i| cubic((i as f64 - center + 0.5) * ss))
                .collect();
            let sum: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&v| {
                    let v = if sum != 0.0 { v / sum } else { v };
                    if v < 0.0 {
                        (-0.5 + v * one) as i32
                    } else {
                        (0.5 + v * one) as i32
                    }
                })
                .collect();
            (lo, fixed)
        })
        .collect()
}

/// Pillow's `clip8`: a fixed-point accumulator back to 8 bits.
fn clip8(acc: i32) -> u8 {
    if acc >= (1 << PRECISION_BITS << 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// 8-bit RGB rows, `width` pixels each.
struct Rows {
    data: Vec<u8>,
    width: usize,
}

/// Horizontal pass over the rows `rows` of `src` (`width` pixels each, starting at `left`).
fn horizontal(src: &RgbImage, left: usize, rows: std::ops::Range<usize>, taps: &[Taps]) -> Rows {
    let stride = src.width() as usize * 3;
    let raw = src.as_raw();
    let mut data = Vec::with_capacity(rows.len() * taps.len() * 3);
    for y in rows {
        let row = &raw[y * stride..(y + 1) * stride];
        for (lo, w) in taps {
            let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
            for (k, &wk) in w.iter().enumerate() {
                let p = (left + lo + k) * 3;
                for (a, &v) in acc.iter_mut().zip(&row[p..p + 3]) {
                    *a += i32::from(v) * wk;
                }
            }
            data.extend(acc.map(clip8));
        }
    }
    Rows {
        data,
        width: taps.len(),
    }
}

/// Vertical pass; `first` is the source row that `rows` starts at.
fn vertical(rows: &Rows, first: usize, taps: &[Taps]) -> Rows {
    let n = rows.width * 3;
    let mut data = Vec::with_capacity(taps.len() * n);
    let mut acc = vec![0i32; n];
    for (lo, w) in taps {
        acc.fill(1 << (PRECISION_BITS - 1));
        for (k, &wk) in w.iter().enumerate() {
            let y = lo + k - first;
            let src = &rows.data[y * n..(y + 1) * n];
            acc.iter_mut()
                .zip(src)
                .for_each(|(a, &s)| *a += i32::from(s) * wk);
        }
        data.extend(acc.iter().map(|&a| clip8(a)));
    }
    Rows {
        data,
        width: rows.width,
    }
}

/// Crops `crop` out of `img` (clamped to the image) and resizes it to `out_w × out_h` exactly as
/// Pillow's `resize(.., BICUBIC)` does, i.e. torchvision's `resized_crop` on PIL images: a
/// horizontal pass over the rows the vertical pass reads, rounded to 8 bits, then the vertical
/// pass; an axis whose size does not change is not resampled. Checked against Pillow 11.3 and
/// 12.3 (Pillow 13.0 runs the vertical pass first for some sizes, so it differs slightly there).
pub fn resize_bicubic(img: &RgbImage, crop: CropBox, out_w: u32, out_h: u32) -> RgbImage {
    let left = crop.left.min(img.width()) as usize;
    let top = crop.top.min(img.height()) as usize;
    let cw = (crop.width as usize).min(img.width() as usize - left);
    let ch = (crop.height as usize).min(img.height() as usize - top);
    let (ow, oh) = (out_w as usize, out_h as usize);
    if cw == 0 || ch == 0 || ow == 0 || oh == 0 {
        return RgbImage::new(out_w, out_h);
    }
    let vtaps = taps(ch, oh);
    let first = vtaps.first().map_or(0, |t| t.0);
    let last = vtaps.last().map_or(ch, |t| t.0 + t.1.len());
    let (rows, first) = if ow != cw {
        let h = horizontal(img, left, top + first..top + last, &taps(cw, ow));
        (h, first)
    } else {
        let h = horizontal(img, left, top..top + ch, &identity(cw));
        (h, 0)
    };
    let out = if oh != ch {
        vertical(&rows, first, &vtaps)
    } else {
        rows
    };
    RgbImage::from_raw(out_w, out_h, out.data).unwrap_or_else(|| RgbImage::new(out_w, out_h))
}

/// Taps that copy `n` pixels unchanged (an axis Pillow does not resample).
fn identity(n: usize) -> Vec<Taps> {
    (0..n).map(|i| (i, vec![1 << PRECISION_BITS])).collect()
}

/// torchvision's eval geometry on PIL images: `Resize(resize)` (the shorter side becomes `resize`,
/// the longer one `int(resize · long / short)`), bicubic, then `CenterCrop(crop)` (offsets
/// rounded half to even, as Python's `round`). A side shorter than `crop` is raised to `crop`.
pub fn resize_centre_crop(img: &RgbImage, resize: u32, crop: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (short, long) = (w.min(h).max(1), w.max(h));
    let scaled = ((u64::from(resize) * u64::from(long)) as f64 / f64::from(short)) as u32;
    let (nw, nh) = if w <= h {
        (resize, scaled)
    } else {
        (scaled, resize)
    };
    let (nw, nh) = (nw.max(crop), nh.max(crop));
    let full = CropBox {
        top: 0,
        left: 0,
        height: h,
        width: w,
    };
    let resized = resize_bicubic(img, full, nw, nh);
    let (x0, y0) = (centre_offset(nw - crop), centre_offset(nh - crop));
    image::imageops::crop_imm(&resized, x0, y0, crop, crop).to_image()
}

/// `int(round(d / 2))` with Python's round half to even.
fn centre_offset(d: u32) -> u32 {
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A high-frequency test pattern (overshoots, so Pillow's clipping between passes matters).
    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb(std::array::from_fn(|c| {
                ((x * 37 + y * 91 + c as u32 * 53 + x * y * 7) % 256) as u8
            }))
        })
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn full(img: &RgbImage) -> CropBox {
        CropBox {
            top: 0,
            left: 0,
            height: img.height(),
            width: img.width(),
        }
    }

    // Expected bytes from Pillow 12.3 (11.3 gives the same): `Image.resize(.., Image.BICUBIC)`.
    const UPSCALED: &str = concat!(
        "002b60063b6f21568c396cb14e8acd67aee38bc7ffa9e4d4bffe26da6e23ea00411e50932d68aa4b8dba6dae",
        "828f9879a2669b707abb5b9bac7cb660997a6daa47865e94be72a2de91bde3a6eb4acaa11add14494f266606",
        "4d8133699c5588bc689acfa9ec46c99e5fd6427a626860476d6f7258a05b80cf60b0b292d044b87952cc2f72",
        "89cc25ab7f3fbb276e4950a33085aa68b0969c9ec3aea5ae96ce43b57b54d032751146702a5a8d537ebc70a8",
        "f394dab0bff42bf76f45cf2d743d64974b8dc072a4d93b6fbd56998d85bd5ac1778cae748a6da266987e93a4",
        "7c9579ad579a8375bc59986da2eb8bce82bbdf07f84532b31b6b255aa1428fe07cc9b5b3f41ce4792dff1058",
    );
    const CROPPED: &str =
        "848381818486848784847d8381867794827b7a857390747a937d937583808385807a7192";
    const EVAL: &str = concat!(
        "6b8e448849964fa3afafa5889b907e997684708b4e4884b79fb655b46483758a9391a475b5726f718074a8df",
        "4f36647b7b967caa813c845b77778ab3a3ce5f3871a28d9aa375b74b3f5ca486a964d5766586639aa770a788",
        "2d715c8ec7b7539579585e4895aa9e48837e385d70a563cf69ae988d8376ba584c869596619e74a9d3d8664d",
        "9b5b9a8c5d7172b25149837f927db8",
    );

    #[test]
    fn matches_pillow_bit_for_bit() {
        let a = pattern(7, 5);
        assert_eq!(
            resize_bicubic(&a, full(&a), 11, 8).into_raw(),
            hex(UPSCALED)
        );
        let b = pattern(13, 11);
        let crop = CropBox {
            top: 1,
            left: 2,
            height: 9,
            width: 10,
        };
        assert_eq!(resize_bicubic(&b, crop, 4, 3).into_raw(), hex(CROPPED));
    }

    #[test]
    fn eval_geometry_matches_torchvision() {
        // 9×12 → Resize(8) → 8×10 (int(8·12/9) = 10) → CenterCrop(7) at (0, round(1.5) = 2)
        let c = pattern(9, 12);
        assert_eq!(resize_centre_crop(&c, 8, 7).into_raw(), hex(EVAL));
        let offsets: Vec<u32> = (0..8).map(centre_offset).collect();
        assert_eq!(offsets, [0, 0, 1, 2, 2, 2, 3, 4]);
    }

    #[test]
    fn resize_keeps_constants_and_identity() {
        let flat = RgbImage::from_pixel(37, 29, image::Rgb([10, 200, 77]));
        let box_ = CropBox {
            top: 3,
            left: 5,
            height: 20,
            width: 30,
        };
        for (ow, oh) in [(8, 8), (64, 48), (30, 20)] {
            let out = resize_bicubic(&flat, box_, ow, oh);
            assert_eq!(out.dimensions(), (ow, oh));
            assert!(out.pixels().all(|p| p.0 == [10, 200, 77]));
        }
        let img = pattern(30, 20);
        assert_eq!(resize_bicubic(&img, full(&img), 30, 20), img);
        let sub = CropBox {
            top: 2,
            left: 4,
            height: 10,
            width: 12,
        };
        let expect = image::imageops::crop_imm(&img, 4, 2, 12, 10).to_image();
        assert_eq!(resize_bicubic(&img, sub, 12, 10), expect);
        assert_eq!(resize_bicubic(&img, sub, 0, 5).dimensions(), (0, 5));
    }
}
