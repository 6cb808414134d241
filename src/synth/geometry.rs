//! The scene's geometry, drawn once from the seed: parcels, water, roads, buildings.
//! Coordinates are in pixels of the scene grid (x = column, y = row, pixel centres at +0.5).
use crate::artefacts::synth::SynthParams;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cover {
    Forest,
    Grass,
    Crop,
    Bare,
}

#[derive(Clone, Debug)]
pub struct Parcel {
    pub x: f64,
    pub y: f64,
    pub cover: Cover,
    /// Brightness multiplier around 1.
    pub tone: f64,
    /// Crop rows: direction (radians) and period (pixels).
    pub stripe_angle: f64,
    pub stripe_period: f64,
}

#[derive(Clone, Debug)]
pub struct Road {
    pub a: [f64; 2],
    pub b: [f64; 2],
    /// Full width, pixels.
    pub width: f64,
}

impl Road {
    /// Distance from point p to the road's centreline segment, pixels.
    pub fn distance(&self, p: [f64; 2]) -> f64 {
        let (dx, dy) = (self.b[0] - self.a[0], self.b[1] - self.a[1]);
        let t = (((p[0] - self.a[0]) * dx + (p[1] - self.a[1]) * dy) / (dx * dx + dy * dy))
            .clamp(0.0, 1.0);
        let (cx, cy) = (self.a[0] + t * dx, self.a[1] + t * dy);
        ((p[0] - cx).powi(2) + (p[1] - cy).powi(2)).sqrt()
    }
}

/// An oriented rectangle with a height.
#[derive(Clone, Debug)]
pub struct Building {
    pub cx: f64,
    pub cy: f64,
    pub half_w: f64,
    pub half_h: f64,
    pub angle: f64,
    pub height_m: f64,
    /// 0 = grey roof, 1 = red tiles.
    pub roof: u8,
    pub tone: f64,
}

impl Building {
    pub fn contains(&self, p: [f64; 2]) -> bool {
        let (s, c) = self.angle.sin_cos();
        let (dx, dy) = (p[0] - self.cx, p[1] - self.cy);
        let u = dx * c + dy * s;
        let v = -dx * s + dy * c;
        u.abs() <= self.half_w && v.abs() <= self.half_h
    }
    pub fn radius(&self) -> f64 {
        (self.half_w * self.half_w + self.half_h * self.half_h).sqrt()
    }
    /// Corners, counter-clockwise in map coordinates (y up), closed.
    pub fn corners(&self) -> [[f64; 2]; 5] {
        let (s, c) = self.angle.sin_cos();
        let pt = |u: f64, v: f64| [self.cx + u * c - v * s, self.cy + u * s + v * c];
        let (w, h) = (self.half_w, self.half_h);
        let p = [pt(-w, -h), pt(-w, h), pt(w, h), pt(w, -h)];
        [p[0], p[1], p[2], p[3], p[0]]
    }
}

/// A smooth random field: a sum of low-frequency cosines (water, haze, forest density).
#[derive(Clone, Debug)]
pub struct SmoothField {
    terms: Vec<(f64, f64, f64, f64)>,
}

impl SmoothField {
    pub fn new(rng: &mut ChaCha8Rng, size: f64, min_period: f64, n: usize) -> Self {
        let terms = (0..n)
            .map(|_| {
                let period = min_period + rng.gen::<f64>() * (size - min_period).max(1.0);
                let a = rng.gen::<f64>() * std::f64::consts::TAU;
                let k = std::f64::consts::TAU / period;
                (k * a.cos(), k * a.sin(), rng.gen::<f64>() * std::f64::consts::TAU, 1.0 / n as f64)
            })
            .collect();
        SmoothField { terms }
    }
    pub fn at(&self, x: f64, y: f64) -> f64 {
        self.terms.iter().map(|(kx, ky, ph, w)| w * (kx * x + ky * y + ph).cos()).sum()
    }
}

pub struct Scene {
    pub size: usize,
    pub parcels: Vec<Parcel>,
    pub roads: Vec<Road>,
    pub buildings: Vec<Building>,
    pub water: SmoothField,
    /// Water where `water.at(x, y) > water_threshold`.
    pub water_threshold: f64,
    pub haze: SmoothField,
    pub texture: SmoothField,
}

impl Scene {
    pub fn generate(p: &SynthParams) -> Scene {
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let n = p.size as f64;
        let km2 = (n * p.pixel_size / 1000.0).powi(2);

        let water = SmoothField::new(&mut rng, n * 1.5, n * 0.4, 6);
        // Threshold at the (1 − water_fraction) quantile over a coarse grid.
        let mut samples: Vec<f64> = (0..64)
            .flat_map(|i| (0..64).map(move |j| (i, j)))
            .map(|(i, j)| water.at((i as f64 + 0.5) * n / 64.0, (j as f64 + 0.5) * n / 64.0))
            .collect();
        samples.sort_by(f64::total_cmp);
        let water_threshold = if p.water_fraction <= 0.0 {
            f64::INFINITY
        } else {
            samples[((1.0 - p.water_fraction) * (samples.len() - 1) as f64) as usize]
        };
        let in_water = |x: f64, y: f64| water.at(x, y) > water_threshold;

        let n_parcels = ((p.parcel_density * km2).round() as usize).max(4);
        let parcels = (0..n_parcels)
            .map(|_| {
                let cover = match rng.gen_range(0..10) {
                    0..=1 => Cover::Forest,
                    2..=3 => Cover::Grass,
                    4..=7 => Cover::Crop,
                    _ => Cover::Bare,
                };
                Parcel {
                    x: rng.gen::<f64>() * n,
                    y: rng.gen::<f64>() * n,
                    cover,
                    tone: 0.8 + 0.4 * rng.gen::<f64>(),
                    stripe_angle: rng.gen::<f64>() * std::f64::consts::PI,
                    stripe_period: 3.0 + 5.0 * rng.gen::<f64>(),
                }
            })
            .collect();

        // A jittered grid of straight roads, slightly rotated.
        let mut roads = Vec::new();
        if p.road_spacing > 0.0 {
            let spacing = p.road_spacing / p.pixel_size;
            let width = (6.0 / p.pixel_size).max(1.5);
            for vertical in [true, false] {
                let mut pos = spacing * (0.3 + 0.4 * rng.gen::<f64>());
                while pos < n {
                    let tilt = (rng.gen::<f64>() - 0.5) * 0.25 * n;
                    let (a, b) = if vertical {
                        ([pos - tilt / 2.0, -1.0], [pos + tilt / 2.0, n + 1.0])
                    } else {
                        ([-1.0, pos - tilt / 2.0], [n + 1.0, pos + tilt / 2.0])
                    };
                    roads.push(Road { a, b, width });
                    pos += spacing * (0.7 + 0.6 * rng.gen::<f64>());
                }
            }
        }

        // Buildings near roads, aligned with the nearest road, on land, not overlapping.
        let target = (p.building_density * km2).round() as usize;
        let mut buildings: Vec<Building> = Vec::with_capacity(target);
        let mut attempts = 0;
        while buildings.len() < target && attempts < target * 30 + 100 {
            attempts += 1;
            let half_w = (4.0 + 8.0 * rng.gen::<f64>()) / p.pixel_size;
            let half_h = (4.0 + 8.0 * rng.gen::<f64>()) / p.pixel_size;
            let (cx, cy) = (rng.gen::<f64>() * n, rng.gen::<f64>() * n);
            let (road, dist) = roads
                .iter()
                .map(|r| (r, r.distance([cx, cy])))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map_or((None, f64::INFINITY), |(r, d)| (Some(r), d));
            let radius = (half_w * half_w + half_h * half_h).sqrt();
            // Setback from the road: a few metres; within ~60 m of it.
            let width = road.map_or(0.0, |r| r.width);
            if road.is_some()
                && (dist < width / 2.0 + radius + 2.0 / p.pixel_size
                    || dist > 60.0 / p.pixel_size + radius)
            {
                continue;
            }
            if in_water(cx, cy)
                || buildings.iter().any(|b| {
                    ((b.cx - cx).powi(2) + (b.cy - cy).powi(2)).sqrt() < b.radius() + radius + 1.0
                })
            {
                continue;
            }
            let angle = road.map_or(0.0, |r| (r.b[1] - r.a[1]).atan2(r.b[0] - r.a[0]))
                + (rng.gen::<f64>() - 0.5) * 0.1;
            buildings.push(Building {
                cx,
                cy,
                half_w,
                half_h,
                angle,
                height_m: 4.0 + 14.0 * rng.gen::<f64>(),
                roof: rng.gen_range(0..2),
                tone: 0.8 + 0.4 * rng.gen::<f64>(),
            });
        }
        let haze = SmoothField::new(&mut rng, n * 2.0, n * 0.5, 4);
        let texture = SmoothField::new(&mut rng, n / 4.0, 8.0, 16);
        Scene { size: p.size, parcels, roads, buildings, water, water_threshold, haze, texture }
    }

    pub fn in_water(&self, x: f64, y: f64) -> bool {
        self.water.at(x, y) > self.water_threshold
    }

    /// Buildings (polygons) and roads (lines) in map coordinates of the scene's CRS.
    pub fn to_geojson(&self, p: &SynthParams) -> String {
        let gt = p.geotransform();
        let map = |q: [f64; 2]| json!([gt[0] + q[0] * gt[1], gt[3] + q[1] * gt[5]]);
        let mut features: Vec<serde_json::Value> = self
            .buildings
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let ring: Vec<_> = b.corners().iter().map(|&c| map(c)).collect();
                json!({"type": "Feature", "properties": {"kind": "building", "id": i, "height_m": (b.height_m * 100.0).round() / 100.0},
                       "geometry": {"type": "Polygon", "coordinates": [ring]}})
            })
            .collect();
        features.extend(self.roads.iter().enumerate().map(|(i, r)| {
            json!({"type": "Feature", "properties": {"kind": "road", "id": i, "width_m": r.width * p.pixel_size},
                   "geometry": {"type": "LineString", "coordinates": [map(r.a), map(r.b)]}})
        }));
        let doc = json!({
            "type": "FeatureCollection",
            "crs": {"type": "name", "properties": {"name": format!("urn:ogc:def:crs:EPSG::{}", p.epsg)}},
            "features": features,
        });
        serde_json::to_string(&doc).expect("serialisable") + "\n"
    }
}
