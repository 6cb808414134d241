//! Running the learning stages: they live in the `simreg-learn` program (linked with libtorch),
//! which `simreg` starts, so that the GDAL-side commands do not pay for loading libtorch
//! (~0.3 s). One call for every stage: the request (`artefacts::learn`) goes as JSON on the
//! child's standard input, the typed summary comes back on its standard output.
use crate::artefacts::learn::Request;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `simreg-learn`, next to the running `simreg` (as cargo and `make build` place them).
pub fn binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the simreg executable")?;
    let path = exe.with_file_name("simreg-learn");
    if !path.is_file() {
        bail!(
            "'{}' not found: the learning stages need it beside simreg (build the workspace: \
             make build)",
            path.display()
        );
    }
    Ok(path)
}

/// A learning program that failed and has printed its own one-line error: `simreg` exits with
/// its status without adding a second line.
#[derive(Debug, thiserror::Error)]
#[error("simreg-learn failed with status {0}")]
pub struct ChildFailed(pub i32);

/// How the child runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Call {
    /// No progress output.
    pub quiet: bool,
    /// Threads for libtorch and rayon (default: all cores).
    pub threads: Option<usize>,
    /// Return the child's error as this call's error (its last line on standard error)
    /// instead of letting it print: `simreg batch` records it per pair.
    pub capture_errors: bool,
}

/// Runs `req` in `simreg-learn` and returns its summary.
pub fn call<R: Request>(req: R, how: &Call) -> Result<R::Summary> {
    let mut cmd = Command::new(binary()?);
    if how.quiet || how.capture_errors {
        cmd.arg("--quiet");
    }
    if let Some(t) = how.threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    cmd.arg("run").stdin(Stdio::piped()).stdout(Stdio::piped());
    cmd.stderr(if how.capture_errors { Stdio::piped() } else { Stdio::inherit() });
    let request = serde_json::to_vec(&req.into())?;
    // The child dies with this process, and is terminated (and waited for) on SIGINT/SIGTERM.
    crate::util::interrupt::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().context("cannot start simreg-learn")?;
    let _on_signal = crate::util::interrupt::terminate_on_signal(child.id());
    {
        let mut stdin = child.stdin.take().expect("piped");
        // A child that fails before reading its request closes the pipe: its own error says why.
        let _ = stdin.write_all(&request);
    }
    let out = child.wait_with_output().context("simreg-learn: lost contact")?;
    // Interrupted: the signal handler reports and exits.
    crate::util::interrupt::wait_if_pending();
    #[cfg(unix)]
    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&out.status) {
        let hint =
            if sig == 9 { " (out of memory? lower --max-memory or the batch size)" } else { "" };
        bail!("simreg-learn was killed by signal {sig}{hint}");
    }
    if !out.status.success() {
        if how.capture_errors {
            let err = String::from_utf8_lossy(&out.stderr);
            let line =
                err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("simreg-learn failed");
            bail!("{}", line.trim_start_matches("simreg: error: "));
        }
        return Err(ChildFailed(out.status.code().unwrap_or(1)).into());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::anyhow!(
            "simreg-learn answered without a readable summary ({e}): rebuild it (make build)"
        )
    })
}
