//! Embeds an rpath to libtorch so `simreg`, tests and examples run without LD_LIBRARY_PATH.
use std::path::Path;

fn main() {
    // torch-sys (a build-dependency at tch's version) exports where it linked libtorch from.
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // Canonicalise to the wheel's real lib dir, so its $ORIGIN-relative rpaths resolve.
        let so = Path::new(&lib).join("libtorch_cpu.so");
        let dir = std::fs::canonicalize(&so)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| Path::new(&lib).to_path_buf());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // rustc links --as-needed, which would drop libtorch_cuda.so (no symbol is referenced).
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
