//! Where tiles go: a regular grid of windows with overlap, and an explicit policy at the edges.
use crate::artefacts::tiles::{EdgePolicy, Placement};
use crate::raster::grid::Window;
use anyhow::{bail, Result};

fn offsets(len: usize, size: usize, stride: usize, policy: EdgePolicy) -> Vec<(i64, Placement)> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + size <= len {
        out.push((off as i64, Placement::Interior));
        off += stride;
    }
    let covered = out.last().map_or(0, |&(o, _)| o as usize + size);
    if covered < len {
        match policy {
            EdgePolicy::Drop => {}
            EdgePolicy::Pad => out.push((off as i64, Placement::Padded)),
            EdgePolicy::Shift => out.push(((len - size) as i64, Placement::Shifted)),
        }
    }
    out
}

/// All windows of `size`×`size` pixels with `overlap` pixels shared between neighbours, in
/// row-major order.
pub fn plan_windows(
    width: usize,
    height: usize,
    size: usize,
    overlap: usize,
    policy: EdgePolicy,
) -> Result<Vec<(Window, Placement)>> {
    if size == 0 {
        bail!("tile size must be at least 1 pixel");
    }
    if overlap >= size {
        bail!("overlap ({overlap}) must be smaller than the tile size ({size})");
    }
    if size > width || size > height {
        bail!("tile size {size} is larger than the raster ({width}x{height})");
    }
    let stride = size - overlap;
    let cols = offsets(width, size, stride, policy);
    let rows = offsets(height, size, stride, policy);
    let rank = |p: Placement| match p {
        Placement::Interior => 0,
        Placement::Shifted => 1,
        Placement::Padded => 2,
    };
    let mut out = Vec::with_capacity(cols.len() * rows.len());
    for &(row, pr) in &rows {
        for &(col, pc) in &cols {
            let placement = if rank(pr) >= rank(pc) { pr } else { pc };
            out.push((Window { col, row, width: size, height: size }, placement));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_fit_has_only_interior_tiles() {
        let w = plan_windows(112, 64, 64, 16, EdgePolicy::Shift).unwrap();
        assert_eq!(w.len(), 2);
        assert!(w.iter().all(|(_, p)| *p == Placement::Interior));
        assert_eq!(w[1].0.col, 48);
    }

    #[test]
    fn each_policy_handles_the_remainder() {
        // 120 px, tile 64, stride 48: regular offsets 0, 48; remainder 112..120.
        let cols = |p| {
            plan_windows(120, 64, 64, 16, p)
                .unwrap()
                .iter()
                .map(|(w, pl)| (w.col, *pl))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cols(EdgePolicy::Drop),
            vec![(0, Placement::Interior), (48, Placement::Interior)]
        );
        assert_eq!(
            cols(EdgePolicy::Pad),
            vec![(0, Placement::Interior), (48, Placement::Interior), (96, Placement::Padded)]
        );
        assert_eq!(
            cols(EdgePolicy::Shift),
            vec![(0, Placement::Interior), (48, Placement::Interior), (56, Placement::Shifted)]
        );
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(plan_windows(100, 100, 0, 0, EdgePolicy::Drop).is_err());
        assert!(plan_windows(100, 100, 32, 32, EdgePolicy::Drop).is_err());
        let e = plan_windows(100, 50, 64, 0, EdgePolicy::Pad).unwrap_err().to_string();
        assert!(e.contains("larger than the raster"), "{e}");
    }

    proptest! {
        // Shift and pad cover every pixel; shift and drop never leave the raster; neighbours on
        // the regular grid share exactly `overlap` pixels.
        #[test]
        fn coverage_and_bounds(w in 8usize..300, h in 8usize..300, size in 4usize..64, ov_frac in 0.0f64..0.9) {
            prop_assume!(size <= w && size <= h);
            let overlap = ((size as f64) * ov_frac) as usize;
            for policy in [EdgePolicy::Drop, EdgePolicy::Pad, EdgePolicy::Shift] {
                let wins = plan_windows(w, h, size, overlap, policy).unwrap();
                let mut covered = vec![false; w * h];
                for (win, pl) in &wins {
                    let inside = win.col + size as i64 <= w as i64 && win.row + size as i64 <= h as i64;
                    prop_assert_eq!(inside, *pl != Placement::Padded);
                    prop_assert!(win.col >= 0 && win.row >= 0);
                    for y in win.row.max(0)..(win.row + size as i64).min(h as i64) {
                        for x in win.col.max(0)..(win.col + size as i64).min(w as i64) {
                            covered[y as usize * w + x as usize] = true;
                        }
                    }
                }
                if policy != EdgePolicy::Drop {
                    prop_assert!(covered.iter().all(|&c| c));
                }
                let interior: Vec<_> = wins.iter().filter(|(_, p)| *p == Placement::Interior).map(|(w, _)| w.col).collect();
                if let (Some(a), Some(b)) = (interior.first(), interior.iter().find(|&&c| c > interior[0])) {
                    prop_assert_eq!((b - a) as usize, size - overlap);
                }
            }
        }
    }
}
