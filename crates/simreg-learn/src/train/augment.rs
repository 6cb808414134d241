//! Augmentations that are exact for displacement targets: the 8 symmetries of the square
//! (90° rotations and flips), applied to the images, the dense target and the vectors alike.
use tch::Tensor;

/// One of the 8 symmetries: `rot` quarter turns (as `Tensor::rot90` over (H, W)), then an
/// optional flip of the columns (x → −x).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symmetry {
    pub rot: i64,
    pub flip_x: bool,
}

impl Symmetry {
    pub const IDENTITY: Symmetry = Symmetry { rot: 0, flip_x: false };

    pub fn from_index(i: u8) -> Symmetry {
        Symmetry { rot: (i % 4) as i64, flip_x: i >= 4 }
    }

    /// Applies to a batch of images (N, C, H, W).
    pub fn image(&self, x: &Tensor) -> Tensor {
        let r = if self.rot == 0 { x.shallow_clone() } else { x.rot90(self.rot, [2, 3]) };
        if self.flip_x {
            r.flip([3])
        } else {
            r
        }
    }

    /// The same symmetry acting on displacement vectors (x east = columns, y south = rows).
    /// `rot90` over (H, W) takes the pixel at (row r, col c) to (W−1−c, r): a vector (dx, dy)
    /// becomes (dy, −dx); the column flip negates dx.
    pub fn vector(&self, v: [f64; 2]) -> [f64; 2] {
        let mut v = v;
        for _ in 0..self.rot {
            v = [v[1], -v[0]];
        }
        if self.flip_x {
            v[0] = -v[0];
        }
        v
    }

    /// Applies to a dense field (N, 2, H, W): moves the pixels and transforms the vectors.
    pub fn field(&self, f: &Tensor) -> Tensor {
        let moved = self.image(f);
        let dx = moved.narrow(1, 0, 1);
        let dy = moved.narrow(1, 1, 1);
        let (ex, ey) = (self.vector([1.0, 0.0]), self.vector([0.0, 1.0]));
        // New components as linear combinations of the old ones.
        let nx = &dx * ex[0] + &dy * ey[0];
        let ny = &dx * ex[1] + &dy * ey[1];
        Tensor::cat(&[nx, ny], 1)
    }

    /// Applies to vectors (N, 2).
    pub fn vectors(&self, v: &Tensor) -> Tensor {
        let (ex, ey) = (self.vector([1.0, 0.0]), self.vector([0.0, 1.0]));
        let (dx, dy) = (v.narrow(1, 0, 1), v.narrow(1, 1, 1));
        Tensor::cat(&[&dx * ex[0] + &dy * ey[0], &dx * ex[1] + &dy * ey[1]], 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// An image with one bright pixel at (col, row); the "moving" image with it at (col, row) + d.
    fn point(n: i64, col: i64, row: i64) -> Tensor {
        let t = Tensor::zeros([1, 1, n, n], (Kind::Float, Device::Cpu));
        let _ = t.get(0).get(0).get(row).get(col).fill_(1.0);
        t
    }

    fn argmax(t: &Tensor) -> (i64, i64) {
        let n = t.size()[3];
        let i = t.flatten(0, -1).argmax(0, false).int64_value(&[]);
        (i % n, i / n)
    }

    #[test]
    fn every_symmetry_maps_a_displaced_pair_to_a_displaced_pair() {
        let n = 9;
        let (c, r, d) = (2, 3, [3.0, 4.0]);
        let reference = point(n, c, r);
        let moving = point(n, c + d[0] as i64, r + d[1] as i64);
        for i in 0..8 {
            let s = Symmetry::from_index(i);
            let (rc, rr) = argmax(&s.image(&reference));
            let (mc, mr) = argmax(&s.image(&moving));
            let v = s.vector(d);
            assert_eq!(((mc - rc) as f64, (mr - rr) as f64), (v[0], v[1]), "{s:?}");
            // The dense and the vector forms agree.
            let f = Tensor::from_slice(&[d[0] as f32, d[1] as f32])
                .view([1, 2, 1, 1])
                .repeat([1, 1, n, n]);
            let tf = s.field(&f);
            assert_eq!(
                (tf.double_value(&[0, 0, 0, 0]), tf.double_value(&[0, 1, 4, 4])),
                (v[0], v[1])
            );
            let tv = s.vectors(&Tensor::from_slice(&[d[0] as f32, d[1] as f32]).view([1, 2]));
            assert_eq!((tv.double_value(&[0, 0]), tv.double_value(&[0, 1])), (v[0], v[1]));
        }
    }
}
