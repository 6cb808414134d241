//! Compute device and thread settings for libtorch (used by the learning stages).
use anyhow::{bail, Result};
use serde::Serialize;
pub use simreg::learn::DeviceChoice;

pub fn resolve(choice: DeviceChoice) -> Result<tch::Device> {
    match choice {
        DeviceChoice::Cpu => Ok(tch::Device::Cpu),
        DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
        DeviceChoice::Cuda => {
            if tch::Cuda::is_available() {
                Ok(tch::Device::Cuda(0))
            } else if !tch::utils::has_cuda() {
                bail!("--device cuda: this build's libtorch has no CUDA (build with `make build GPU=1`: CUDA libtorch and the cuda feature)")
            } else {
                bail!("--device cuda: libtorch sees no GPU on this machine")
            }
        }
    }
}

/// Gives libtorch (OpenMP) and rayon the same thread budget, never more than asked.
pub fn set_threads(threads: usize) {
    let threads = threads.max(1);
    tch::set_num_threads(threads as i32);
    // Inter-op parallelism would add a second pool on top of intra-op threads.
    tch::set_num_interop_threads(1);
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
}

/// The libtorch part of what `simreg info` prints.
#[derive(Serialize)]
pub struct Info {
    pub simreg_learn: &'static str,
    pub libtorch_cuda_built: bool,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub threads: i32,
}

pub fn info() -> Info {
    Info {
        simreg_learn: env!("CARGO_PKG_VERSION"),
        libtorch_cuda_built: tch::utils::has_cuda(),
        cuda_available: tch::Cuda::is_available(),
        cuda_devices: tch::Cuda::device_count(),
        threads: tch::get_num_threads(),
    }
}
