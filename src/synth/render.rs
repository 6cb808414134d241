//! Rendering the geometry into optical, SAR-like and map rasters.
use super::geometry::{Cover, Scene};
use crate::artefacts::synth::SynthParams;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, StandardNormal};
use rayon::prelude::*;

pub struct Rendered {
    /// B, G, R, NIR surface reflectance.
    pub optical: [Vec<f32>; 4],
    /// VV, VH backscatter in dB (speckled).
    pub sar_db: [Vec<f32>; 2],
    /// Building fill, building edge, road centreline (0/1).
    pub map: [Vec<f32>; 3],
}

/// What is on the ground at one pixel, as area fractions (sub-pixel sampling).
#[derive(Clone, Copy, Default)]
struct Mix {
    water: f64,
    road: f64,
    roof: f64,
    /// Fraction of the pixel in a building's cast (optical) shadow.
    shadow: f64,
    /// Ground just in front of a wall facing the radar: wall–ground corner reflector.
    double_bounce: f64,
    /// Ground hidden from the radar behind a building.
    radar_shadow: f64,
}

/// Reflectance (B, G, R, NIR) and backscatter (VV, VH, linear) of each cover.
fn optical_of(c: Cover) -> [f64; 4] {
    match c {
        Cover::Forest => [0.02, 0.04, 0.02, 0.30],
        Cover::Grass => [0.04, 0.08, 0.05, 0.40],
        Cover::Crop => [0.05, 0.09, 0.06, 0.45],
        Cover::Bare => [0.10, 0.13, 0.18, 0.24],
    }
}
fn sar_db_of(c: Cover) -> [f64; 2] {
    // Forest: darkest optically, brightest in SAR (volume scattering); bare soil the reverse.
    match c {
        Cover::Forest => [-7.0, -12.0],
        Cover::Grass => [-12.0, -19.0],
        Cover::Crop => [-10.0, -16.0],
        Cover::Bare => [-13.0, -22.0],
    }
}
const WATER_OPT: [f64; 4] = [0.06, 0.05, 0.03, 0.02];
const WATER_SAR: [f64; 2] = [-23.0, -29.0];
const ROAD_OPT: [f64; 4] = [0.14, 0.14, 0.15, 0.17];
const ROAD_SAR: [f64; 2] = [-17.0, -25.0];
const ROOF_OPT: [[f64; 4]; 2] = [[0.20, 0.20, 0.21, 0.23], [0.10, 0.09, 0.20, 0.25]];
const ROOF_SAR: [f64; 2] = [-8.0, -16.0];
const DOUBLE_BOUNCE_SAR: [f64; 2] = [6.0, -6.0];
const RADAR_SHADOW_SAR: [f64; 2] = [-26.0, -32.0];
/// Sun azimuth (clockwise from north) and elevation; the radar's side and incidence are scene
/// parameters.
const SUN_AZIMUTH: f64 = 150.0;
const SUN_ELEVATION: f64 = 40.0;

fn db(v: f64) -> f64 {
    10f64.powf(v / 10.0)
}

/// Per-pixel sub-samples (2×2) for area fractions.
const SUB: [[f64; 2]; 4] = [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]];

pub fn render(scene: &Scene, p: &SynthParams) -> Rendered {
    let n = scene.size;
    let mix = features(scene, p);
    // Per row: the optical pixels (B, G, R, NIR) and the SAR pixels (VV, VH).
    type Row = (Vec<[f32; 4]>, Vec<[f32; 2]>);
    let rows: Vec<Row> = (0..n)
        .into_par_iter()
        .map(|row| {
            // One random stream per row: deterministic whatever the thread count.
            let mut rng = ChaCha8Rng::seed_from_u64(p.seed ^ 0x5EED_0000);
            rng.set_stream(row as u64);
            let speckle = Gamma::new(p.looks, 1.0 / p.looks).expect("looks ≥ 1");
            let mut opt_row = Vec::with_capacity(n);
            let mut sar_row = Vec::with_capacity(n);
            for col in 0..n {
                let (x, y) = (col as f64 + 0.5, row as f64 + 0.5);
                let m = mix[row * n + col];
                let parcel = scene
                    .parcels
                    .iter()
                    .min_by(|a, b| {
                        ((a.x - x).powi(2) + (a.y - y).powi(2))
                            .total_cmp(&((b.x - x).powi(2) + (b.y - y).powi(2)))
                    })
                    .expect("≥ 4 parcels");
                let tex = 1.0 + 0.08 * scene.texture.at(x, y);
                let mut land = optical_of(parcel.cover).map(|v| v * parcel.tone * tex);
                let mut land_sar = sar_db_of(parcel.cover).map(db);
                if parcel.cover == Cover::Crop {
                    // Crop rows modulate both optical and SAR (different phase: not monotone).
                    let (s, c) = parcel.stripe_angle.sin_cos();
                    let phase = (x * c + y * s) / parcel.stripe_period * std::f64::consts::TAU;
                    land = land.map(|v| v * (1.0 + 0.15 * phase.sin()));
                    land_sar = land_sar.map(|v| v * (1.0 + 0.3 * phase.cos()));
                }
                let ground = 1.0 - m.water - m.road - m.roof;
                let roof = if m.roof > 0.0 { scene_roof(scene, x, y) } else { (0, 1.0) };
                let mut o = [0.0; 4];
                for k in 0..4 {
                    let lit = ground.max(0.0) * land[k]
                        + m.water * WATER_OPT[k]
                        + m.road * ROAD_OPT[k]
                        + m.roof * ROOF_OPT[roof.0][k] * roof.1;
                    // Cast shadow on the ground keeps only the diffuse part of the light.
                    let shaded = lit * (1.0 - 0.7 * m.shadow);
                    let noise: f64 = StandardNormal.sample(&mut rng);
                    let haze =
                        p.haze * [1.0, 0.7, 0.45, 0.2][k] * (1.0 + 0.5 * scene.haze.at(x, y));
                    o[k] = (shaded * (1.0 + 0.03 * noise) + haze).max(0.0) as f32;
                }
                let mut s = [0.0; 2];
                for k in 0..2 {
                    let plain = ground.max(0.0) * land_sar[k]
                        + m.water * db(WATER_SAR[k])
                        + m.road * db(ROAD_SAR[k])
                        + m.roof * db(ROOF_SAR[k]);
                    let sigma0 = plain * (1.0 - m.double_bounce - m.radar_shadow).max(0.0)
                        + m.double_bounce * db(DOUBLE_BOUNCE_SAR[k])
                        + m.radar_shadow * db(RADAR_SHADOW_SAR[k]);
                    let intensity = sigma0 * speckle.sample(&mut rng);
                    s[k] = (10.0 * intensity.max(1e-6).log10()) as f32;
                }
                opt_row.push(o);
                sar_row.push(s);
            }
            (opt_row, sar_row)
        })
        .collect();
    let mut optical: [Vec<f32>; 4] = Default::default();
    let mut sar_db: [Vec<f32>; 2] = Default::default();
    for (o, s) in rows {
        for px in o {
            for k in 0..4 {
                optical[k].push(px[k]);
            }
        }
        for px in s {
            sar_db[0].push(px[0]);
            sar_db[1].push(px[1]);
        }
    }
    Rendered { optical, sar_db, map: map_layers(scene, &mix) }
}

/// Roof colour (grey/red) and tone of the building covering (x, y), if any.
fn scene_roof(scene: &Scene, x: f64, y: f64) -> (usize, f64) {
    scene
        .buildings
        .iter()
        .find(|b| b.contains([x, y]))
        .map_or((0, 1.0), |b| (b.roof as usize, b.tone))
}

/// Area fractions of water, roads, roofs, shadows and radar effects for every pixel.
fn features(scene: &Scene, p: &SynthParams) -> Vec<Mix> {
    let n = scene.size;
    let mut mix: Vec<Mix> = (0..n * n)
        .into_par_iter()
        .map(|i| {
            let (col, row) = ((i % n) as f64, (i / n) as f64);
            let mut m = Mix::default();
            for s in SUB {
                let q = [col + s[0], row + s[1]];
                if scene.roads.iter().any(|r| r.distance(q) <= r.width / 2.0) {
                    m.road += 0.25;
                } else if scene.in_water(q[0], q[1]) {
                    m.water += 0.25;
                }
            }
            m
        })
        .collect();
    let az = SUN_AZIMUTH.to_radians();
    // Shadow direction in pixels (x east, y south): away from the sun.
    let sun_dir = [-az.sin(), az.cos()];
    let look = p.look_from.sign();
    for b in &scene.buildings {
        let shadow_len = b.height_m / SUN_ELEVATION.to_radians().tan() / p.pixel_size;
        let radar_len = b.height_m * p.incidence.to_radians().tan() / p.pixel_size;
        let reach = b.radius() + shadow_len.max(radar_len) + 2.0;
        let (c0, c1) = (
            ((b.cx - reach).floor().max(0.0)) as usize,
            ((b.cx + reach).ceil().min(n as f64)) as usize,
        );
        let (r0, r1) = (
            ((b.cy - reach).floor().max(0.0)) as usize,
            ((b.cy + reach).ceil().min(n as f64)) as usize,
        );
        for row in r0..r1 {
            for col in c0..c1 {
                let m = &mut mix[row * n + col];
                for s in SUB {
                    let q = [col as f64 + s[0], row as f64 + s[1]];
                    if b.contains(q) {
                        // A roof replaces whatever the ground was (see the normalisation below).
                        m.roof += 0.25;
                        continue;
                    }
                    // Optical cast shadow: the ray towards the sun hits the building.
                    let steps = (shadow_len * 2.0).ceil() as usize;
                    if (1..=steps).any(|k| {
                        let t = k as f64 * shadow_len / steps as f64;
                        b.contains([q[0] - t * sun_dir[0], q[1] - t * sun_dir[1]])
                    }) {
                        m.shadow += 0.25;
                    }
                    // Radar from the east (look = +1): the ground just east of an east-facing
                    // wall bounces twice back to the sensor; ground west of the building is
                    // hidden. From the west, mirrored.
                    if b.contains([q[0] - look, q[1]]) {
                        m.double_bounce += 0.25;
                    } else {
                        let steps = (radar_len * 2.0).ceil().max(1.0) as usize;
                        if (1..=steps).any(|k| {
                            b.contains([q[0] + look * k as f64 * radar_len / steps as f64, q[1]])
                        }) {
                            m.radar_shadow += 0.25;
                        }
                    }
                }
            }
        }
    }
    for m in &mut mix {
        m.roof = m.roof.min(1.0);
        let rest = 1.0 - m.roof;
        m.road = m.road.min(rest);
        m.water = m.water.min(rest - m.road);
        m.shadow = m.shadow.min(1.0);
        m.double_bounce = m.double_bounce.min(1.0);
        m.radar_shadow = m.radar_shadow.min(1.0 - m.double_bounce);
    }
    mix
}

fn map_layers(scene: &Scene, mix: &[Mix]) -> [Vec<f32>; 3] {
    let n = scene.size;
    let fill: Vec<f32> = mix.iter().map(|m| if m.roof >= 0.5 { 1.0 } else { 0.0 }).collect();
    let edge = (0..n * n)
        .map(|i| {
            let (c, r) = (i % n, i / n);
            let inside = |c: isize, r: isize| {
                c >= 0
                    && r >= 0
                    && (c as usize) < n
                    && (r as usize) < n
                    && fill[r as usize * n + c as usize] > 0.0
            };
            let (c, r) = (c as isize, r as isize);
            if inside(c, r)
                && !(inside(c - 1, r) && inside(c + 1, r) && inside(c, r - 1) && inside(c, r + 1))
            {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let roads = (0..n * n)
        .into_par_iter()
        .map(|i| {
            let q = [(i % n) as f64 + 0.5, (i / n) as f64 + 0.5];
            if scene.roads.iter().any(|r| r.distance(q) <= 0.5) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    [fill, edge, roads]
}

/// Speckle alone: `sigma0` (linear) times gamma noise of `looks` looks (for tests).
pub fn speckle(sigma0: f64, looks: f64, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let g = Gamma::new(looks, 1.0 / looks).expect("looks ≥ 1");
    (0..n).map(|_| sigma0 * g.sample(&mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speckle_has_gamma_statistics_of_l_looks() {
        for looks in [1.0, 4.0, 9.0] {
            let v = speckle(2.5, looks, 200_000, 3);
            let ratio: Vec<f64> = v.iter().map(|x| x / 2.5).collect();
            let mean = ratio.iter().sum::<f64>() / ratio.len() as f64;
            let var = ratio.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / ratio.len() as f64;
            assert!((mean - 1.0).abs() < 0.05, "L={looks}: mean {mean}");
            assert!(
                (var * looks - 1.0).abs() < 0.05,
                "L={looks}: variance {var} vs {}",
                1.0 / looks
            );
        }
    }

    #[test]
    fn sar_radiometry_is_not_a_monotone_function_of_optical() {
        // Brightness (mean visible reflectance) against VV backscatter, per surface.
        let vis = |o: [f64; 4]| (o[0] + o[1] + o[2]) / 3.0;
        let mut pairs: Vec<(f64, f64)> = [Cover::Forest, Cover::Grass, Cover::Crop, Cover::Bare]
            .iter()
            .map(|&c| (vis(optical_of(c)), sar_db_of(c)[0]))
            .collect();
        pairs.extend([
            (vis(WATER_OPT), WATER_SAR[0]),
            (vis(ROAD_OPT), ROAD_SAR[0]),
            (vis(ROOF_OPT[0]), ROOF_SAR[0]),
        ]);
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ups = pairs.windows(2).filter(|w| w[1].1 > w[0].1).count();
        let downs = pairs.windows(2).filter(|w| w[1].1 < w[0].1).count();
        assert!(ups >= 2 && downs >= 2, "optical→SAR must go both up and down: {pairs:?}");
    }

    #[test]
    fn rendering_is_deterministic_and_physical() {
        let p = SynthParams { size: 96, seed: 4, ..Default::default() };
        let a = render(&Scene::generate(&p), &p);
        let b = render(&Scene::generate(&p), &p);
        assert_eq!(a.optical, b.optical);
        assert_eq!(a.sar_db, b.sar_db);
        assert!(a.optical.iter().flatten().all(|v| v.is_finite() && *v >= 0.0 && *v < 1.0));
        assert!(a.sar_db.iter().flatten().all(|v| v.is_finite() && *v > -80.0 && *v < 30.0));
        // VH below VV on average (cross-pol is weaker).
        let mean = |v: &Vec<f32>| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        assert!(mean(&a.sar_db[1]) < mean(&a.sar_db[0]) - 3.0);
    }

    /// Double bounce lines the walls facing the radar: east of the buildings when it looks
    /// from the east, west of them when from the west; the optical image does not change.
    #[test]
    fn look_direction_moves_double_bounce_to_the_facing_walls() {
        use crate::artefacts::synth::LookFrom;
        let side = |look_from| {
            let p = SynthParams { size: 128, seed: 5, look_from, ..Default::default() };
            let scene = Scene::generate(&p);
            let mix = features(&scene, &p);
            // Double bounce weighted by its x offset from the nearest building centre.
            let (mut sum, mut w) = (0.0, 0.0);
            for (i, m) in mix.iter().enumerate() {
                if m.double_bounce > 0.0 {
                    let (x, y) = ((i % 128) as f64 + 0.5, (i / 128) as f64 + 0.5);
                    let b = scene
                        .buildings
                        .iter()
                        .min_by(|a, b| {
                            let d = |b: &crate::synth::geometry::Building| {
                                (b.cx - x).powi(2) + (b.cy - y).powi(2)
                            };
                            d(a).total_cmp(&d(b))
                        })
                        .unwrap();
                    sum += m.double_bounce * (x - b.cx);
                    w += m.double_bounce;
                }
            }
            assert!(w > 5.0, "too little double bounce to tell: {w}");
            (sum / w, render(&scene, &p))
        };
        let (east, e) = side(LookFrom::East);
        let (west, w) = side(LookFrom::West);
        assert!(east > 0.5 && west < -0.5, "offsets east {east}, west {west}");
        assert_eq!(e.optical, w.optical);
        assert_ne!(e.sar_db, w.sar_db);
    }
}
