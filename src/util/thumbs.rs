//! Small PNG thumbnails of tile pairs for the similarity and report outputs.
use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Maps a robustly normalised value (≈ −1…1, see the training data) to 0…255.
fn byte(z: f32) -> u8 {
    ((z + 1.0) * 127.5).clamp(0.0, 255.0) as u8
}

/// One image of `bands` (band-major, `size`²): bands 3, 2, 1 as RGB when there are ≥ 3
/// (B, G, R, … order, as Sentinel-2 and the synthetic optical scenes), else band 1 as grey.
fn panel(bands: &[f32], n_bands: usize, size: usize) -> impl Fn(usize, usize) -> Rgb<u8> + '_ {
    let plane = size * size;
    let order: [usize; 3] = if n_bands >= 3 { [2, 1, 0] } else { [0, 0, 0] };
    move |x, y| Rgb(order.map(|b| byte(bands[b * plane + y * size + x])))
}

/// Writes reference and moving side by side (2-pixel gap), each `size`² pixels, atomically.
pub fn write_pair_png(
    path: &Path,
    reference: &[f32],
    reference_bands: usize,
    moving: &[f32],
    moving_bands: usize,
    size: usize,
) -> Result<()> {
    save_png(&pair_image(reference, reference_bands, moving, moving_bands, size), path)
}

/// Reference and moving side by side (2-pixel gap), each `size`² pixels.
pub fn pair_image(
    reference: &[f32],
    reference_bands: usize,
    moving: &[f32],
    moving_bands: usize,
    size: usize,
) -> RgbImage {
    let (r, m) = (panel(reference, reference_bands, size), panel(moving, moving_bands, size));
    RgbImage::from_fn((2 * size + 2) as u32, size as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        if x < size {
            r(x, y)
        } else if x >= size + 2 {
            m(x - size - 2, y)
        } else {
            Rgb([255, 255, 255])
        }
    })
}

/// Saves a PNG atomically.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let tmp = crate::util::atomic::temp_path(path).with_extension("tmp.png");
    img.save(&tmp).with_context(|| format!("cannot write '{}'", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write '{}'", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_thumbnail_has_both_panels() {
        let dir = tempfile::tempdir().unwrap();
        let size = 4;
        let reference: Vec<f32> = (0..3 * 16)
            .map(|i| {
                if i < 16 {
                    -1.0
                } else if i < 32 {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let moving = vec![1.0f32; 16];
        let path = dir.path().join("t.png");
        write_pair_png(&path, &reference, 3, &moving, 1, size).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (10, 4));
        // Reference: R = band 3 (+1 → 255), G = band 2 (0 → 127), B = band 1 (−1 → 0).
        assert_eq!(img.get_pixel(0, 0).0, [255, 127, 0]);
        assert_eq!(img.get_pixel(4, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(9, 3).0, [255, 255, 255]);
    }
}
