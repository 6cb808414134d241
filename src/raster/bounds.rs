//! Bounding what a raster's header may make us write (issue 21): a corrupt or hostile header
//! can declare any size, and every stage that writes on the reference grid would write that
//! much. Before any write, each input's first block must be readable, its declared size must
//! be within `--max-pixels`, and the estimated output must fit in the free space.
use super::open::{open_dataset, RasterInfo};
use crate::util::text::gdal_message;
use anyhow::{bail, Result};
use std::path::Path;

/// 2·10⁹ pixels: a full Sentinel-2 tile (10980² ≈ 1.2·10⁸) or Sentinel-1 GRD scene (≈ 4·10⁸)
/// passes with room to spare, a corrupt header's 60000² (3.6·10⁹) or 10¹⁰ does not.
pub const DEFAULT_MAX_PIXELS: u64 = 2_000_000_000;

/// `--max-pixels`, shared by the stages that write on a raster's grid (tile, align, batch).
#[derive(Clone, Copy, Debug, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputLimits {
    /// Refuse an input raster that declares more pixels than this (width × height; e.g. 2e9):
    /// a corrupt header must not fill the disk
    #[arg(long, value_name = "N", default_value = "2e9", value_parser = parse_count)]
    pub max_pixels: u64,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits { max_pixels: DEFAULT_MAX_PIXELS }
    }
}

/// A positive count written as an integer or in scientific notation ("2e9").
pub fn parse_count(s: &str) -> std::result::Result<u64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !v.is_finite() || v < 1.0 || v.fract() != 0.0 || v > u64::MAX as f64 {
        return Err(format!("'{s}' is not a positive whole number"));
    }
    Ok(v as u64)
}

/// The largest window of the first block read to prove the file holds pixels: a single-strip
/// file's "block" can be the whole raster.
const PROBE: usize = 256;

/// Refuses `info` (opened with `role`) when its first block cannot be read — checked first,
/// because a truncated file's header is not to be trusted — or when it declares more than
/// `max_pixels` pixels.
pub fn check_bounded(info: &RasterInfo, role: &str, max_pixels: u64) -> Result<()> {
    let shown = info.path.display();
    let ds = open_dataset(&info.path, role)?;
    // Band 1's first block: the pixels any stage reads first.
    let band = ds.rasterband(1)?;
    let (bw, bh) = band.block_size();
    let w = bw.clamp(1, PROBE).min(info.grid.width);
    let h = bh.clamp(1, PROBE).min(info.grid.height);
    if let Err(e) = band.read_as::<f64>((0, 0), (w, h), (w, h), None) {
        bail!(
            "{role} '{shown}': its first block cannot be read (truncated or corrupt file): {}",
            gdal_message(e)
        );
    }
    let pixels = info.grid.width as u64 * info.grid.height as u64;
    if pixels > max_pixels {
        bail!(
            "{role} '{shown}': declares {}x{} = {} pixels, over --max-pixels {} (a corrupt header? raise --max-pixels if the raster is real)",
            info.grid.width,
            info.grid.height,
            sci(pixels as f64),
            sci(max_pixels as f64)
        );
    }
    Ok(())
}

/// `3.6e9` style, for pixel counts.
pub fn sci(x: f64) -> String {
    if x < 1e6 {
        return format!("{x:.0}");
    }
    let e = x.log10().floor();
    format!("{:.1}e{e}", x / 10f64.powf(e))
}

/// Human-readable bytes (GB with one decimal above 1 GB, else MB).
pub fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else {
        format!("{:.0} MB", (b / 1e6).ceil())
    }
}

/// Free bytes for an unprivileged writer on the file system that will hold `path` (its
/// nearest existing ancestor's).
pub fn free_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let abs = std::path::absolute(path)?;
    let existing = abs.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
    let c = std::ffi::CString::new(existing.as_os_str().as_bytes())?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` a buffer statvfs fills on success.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        bail!(
            "'{}': cannot read free space: {}",
            existing.display(),
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Refuses to start when `need` bytes (an upper estimate of what `out` will hold; `what` says
/// of what) exceed the free space where `out` will be written.
pub fn check_space(out: &Path, need: u64, what: &str) -> Result<()> {
    let free = free_bytes(out)?;
    if need > free {
        bail!(
            "'{}': the output would need about {} ({what}) but only {} are free there",
            out.display(),
            human_bytes(need),
            human_bytes(free)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_a_user_writes_them() {
        assert_eq!(sci(3.6e9), "3.6e9");
        assert_eq!(sci(1e10), "1.0e10");
        assert_eq!(sci(4096.0), "4096");
        assert_eq!(human_bytes(28_800_000_000), "28.8 GB");
        assert_eq!(human_bytes(1_200_000), "2 MB");
        assert_eq!(parse_count("2e9"), Ok(2_000_000_000));
        assert_eq!(parse_count("4096"), Ok(4096));
        for bad in ["-5", "0", "1.5", "NaN", "inf", "x"] {
            assert!(parse_count(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn free_space_is_read_from_the_nearest_existing_ancestor() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("a/b/c");
        let free = free_bytes(&deep).unwrap();
        assert!(free > 0);
        assert!(check_space(&deep, 1, "one byte").is_ok());
        let e = check_space(&deep, u64::MAX / 2, "everything").unwrap_err().to_string();
        assert!(e.contains("only") && e.contains("free"), "{e}");
    }
}
