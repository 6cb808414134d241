//! Compute device and thread settings for libtorch (used by the learning stages).
use anyhow::{bail, Result};
pub use simreg::artefacts::learn::DeviceChoice;
use simreg::artefacts::learn::TorchInfo;

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
pub fn info() -> TorchInfo {
    TorchInfo {
        simreg_learn: env!("CARGO_PKG_VERSION").into(),
        libtorch: tch_version(),
        libtorch_cuda_built: tch::utils::has_cuda(),
        cuda_available: tch::Cuda::is_available(),
        cuda_devices: tch::Cuda::device_count(),
        threads: tch::get_num_threads(),
        device: None,
    }
}

/// The libtorch version this program was built against (torch-sys's).
fn tch_version() -> String {
    "2.13.0".into()
}
