//! The report's PNG plots, drawn with plotters. Text uses DejaVu Sans (Debian's
//! fonts-dejavu-core, installed by setup.sh), registered once per process.
use anyhow::{bail, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT_PATHS: &[&str] =
    &["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"];

/// Registers the plot font; an error names the package to install.
pub fn init_font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = FONT_PATHS.iter().find_map(|p| std::fs::read(p).ok()).ok_or_else(|| format!("report: no DejaVu Sans font (looked for {}); install fonts-dejavu-core (scripts/setup.sh does)", FONT_PATHS.join(", ")))?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| "report: the DejaVu Sans font could not be loaded".to_string())
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plot: {e}")
}

/// One line of a line plot: name, colour, points, optional error bars (x, lo, hi) and an
/// optional shaded band (x, lo, hi), e.g. ± one standard deviation over seeds.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: RGBColor,
    pub points: Vec<(f64, f64)>,
    pub bars: Option<Vec<(f64, f64, f64)>>,
    pub band: Option<Vec<(f64, f64, f64)>>,
}

impl<'a> Series<'a> {
    /// A plain line: no error bars, no band.
    pub fn line(name: &'a str, colour: RGBColor, points: Vec<(f64, f64)>) -> Series<'a> {
        Series { name, colour, points, bars: None, band: None }
    }
}

fn range(v: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        // One value: a unit-wide range around it, so that the ticks differ.
        return (lo - 1.0, hi + 1.0);
    }
    let span = hi - lo;
    (lo - pad * span, hi + pad * span)
}

/// Lines with markers (and error bars where given).
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    y_from_zero: bool,
) -> Result<()> {
    init_font()?;
    if series.iter().all(|s| s.points.is_empty()) {
        bail!("plot '{}': no data", path.display());
    }
    let xs = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)), 0.05);
    let ys_iter = series.iter().flat_map(|s| {
        s.points
            .iter()
            .map(|p| p.1)
            .chain(s.bars.iter().chain(s.band.iter()).flatten().flat_map(|b| [b.1, b.2]))
    });
    let mut ys = range(ys_iter, 0.08);
    if y_from_zero {
        ys.0 = 0.0;
    }
    let root = BitMapBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(xs.0..xs.1, ys.0..ys.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    // Bands first, so that every line is drawn over them.
    for s in series {
        if let Some(b) = s.band.as_ref().filter(|b| b.len() > 1) {
            let outline: Vec<(f64, f64)> =
                b.iter().map(|p| (p.0, p.2)).chain(b.iter().rev().map(|p| (p.0, p.1))).collect();
            chart
                .draw_series(std::iter::once(Polygon::new(outline, s.colour.mix(0.18).filled())))
                .map_err(err)?;
        }
    }
    for s in series {
        let c = s.colour;
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)).point_size(3))
            .map_err(err)?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        if let Some(b) = &s.bars {
            // The bar's middle mark is the series' own point at that x.
            let mid = |x: f64, lo: f64, hi: f64| {
                s.points.iter().find(|p| p.0 == x).map_or((lo + hi) / 2.0, |p| p.1)
            };
            chart
                .draw_series(b.iter().map(|&(x, lo, hi)| {
                    ErrorBar::new_vertical(x, lo, mid(x, lo, hi), hi, c.filled(), 8)
                }))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// A histogram of `values` in `bins` equal bins; bars are coloured by bin.
pub fn histogram(
    path: &Path,
    title: &str,
    x_label: &str,
    values: &[f64],
    bins: usize,
) -> Result<Vec<(f64, f64)>> {
    init_font()?;
    let (lo, hi) = range(values.iter().copied(), 0.0);
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0u32; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        counts[(((v - lo) / w) as usize).min(bins - 1)] += 1;
    }
    let root = BitMapBackend::new(path, (720, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let top = *counts.iter().max().unwrap_or(&1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(lo..hi, 0.0..top.max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("tiles")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(k, &c)| {
            let x0 = lo + k as f64 * w;
            Rectangle::new([(x0, 0.0), (x0 + w * 0.95, c as f64)], RGBColor(70, 110, 170).filled())
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok((0..bins).map(|k| (lo + k as f64 * w, lo + (k + 1) as f64 * w)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_written_as_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        let s = Series {
            name: "x",
            colour: RED,
            points: vec![(0.0, 1.0), (1.0, 2.0)],
            bars: Some(vec![(1.0, 1.5, 2.5)]),
            band: Some(vec![(0.0, 0.5, 1.5), (1.0, 1.0, 3.0)]),
        };
        lines(&p, "t", "x", "y", &[s], true).unwrap();
        let img = image::open(&p).unwrap();
        assert_eq!((img.width(), img.height()), (720, 420));
        // The band is drawn: the same plot without it differs.
        let q = dir.path().join("b.png");
        let s = Series {
            name: "x",
            colour: RED,
            points: vec![(0.0, 1.0), (1.0, 2.0)],
            bars: Some(vec![(1.0, 1.5, 2.5)]),
            band: None,
        };
        lines(
            &q,
            "t",
            "x",
            "y",
            &[
                s,
                Series {
                    name: "y",
                    colour: BLUE,
                    points: vec![(0.0, 0.5), (1.0, 3.0)],
                    bars: None,
                    band: None,
                },
            ],
            true,
        )
        .unwrap();
        let r = dir.path().join("c.png");
        let s = Series {
            name: "x",
            colour: RED,
            points: vec![(0.0, 1.0), (1.0, 2.0)],
            bars: Some(vec![(1.0, 1.5, 2.5)]),
            band: Some(vec![(0.0, 0.5, 1.5), (1.0, 1.0, 3.0)]),
        };
        lines(
            &r,
            "t",
            "x",
            "y",
            &[
                s,
                Series {
                    name: "y",
                    colour: BLUE,
                    points: vec![(0.0, 0.5), (1.0, 3.0)],
                    bars: None,
                    band: None,
                },
            ],
            true,
        )
        .unwrap();
        assert_ne!(
            image::open(&q).unwrap().to_rgb8().into_raw(),
            image::open(&r).unwrap().to_rgb8().into_raw()
        );
        let h = dir.path().join("h.png");
        let edges = histogram(&h, "t", "v", &[1.0, 2.0, 2.5, 9.0], 4).unwrap();
        assert_eq!(edges.len(), 4);
        assert!((edges[3].1 - 9.0).abs() < 1e-9);
        assert!(image::open(&h).is_ok());
        assert!(lines(&dir.path().join("e.png"), "t", "x", "y", &[], false).is_err());
    }
}
