//! SIGINT and SIGTERM (Ctrl-C, `timeout`, a scheduler's cancel): the work in progress is cleaned
//! up and the program exits with 130 or 143, as a shell expects.
//!
//! Both programs (`simreg`, `simreg-learn`) call [`install`] first thing: the two signals are
//! blocked in every thread and one thread waits for them (`sigwait`), so no code runs in a signal
//! handler. On a signal that thread terminates the registered children (`simreg-learn`, which
//! cleans up its own work the same way), removes the registered partial outputs and lock files,
//! and exits. A child started with [`die_with_parent`] also ends when its parent is killed
//! outright (SIGKILL, where no clean-up can run): the kernel sends it SIGTERM.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

#[derive(Default)]
struct Registry {
    partials: Vec<PathBuf>,
    locks: Vec<PathBuf>,
    children: Vec<u32>,
}

static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { partials: Vec::new(), locks: Vec::new(), children: Vec::new() });
/// The signal being handled (0: none).
static PENDING: AtomicI32 = AtomicI32::new(0);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Blocks SIGINT and SIGTERM in this and every later thread, and starts the thread that handles
/// them. Call before any other thread starts (first thing in `main`).
pub fn install() {
    // SAFETY: plain libc calls on a local, zero-initialised signal set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let _ = std::thread::Builder::new().name("signals".into()).spawn(move || loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is a valid signal set owned by this thread.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            on_signal(sig);
        }
    });
}

/// The signal being handled, if one arrived: the caller should not report its own (consequent)
/// error, and wait for the handler to exit.
pub fn pending() -> Option<i32> {
    Some(PENDING.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// Parks the calling thread for good when a signal is being handled (its exit is the handler's).
pub fn wait_if_pending() {
    if pending().is_some() {
        loop {
            std::thread::park();
        }
    }
}

fn on_signal(sig: i32) -> ! {
    PENDING.store(sig, Ordering::SeqCst);
    let reg = registry();
    for &pid in &reg.children {
        // SAFETY: sending a signal to a child this process started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    // The children clean up their own work: wait for them (bounded) before removing ours.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while reg.children.iter().any(|&p| alive(p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for p in &reg.partials {
        let _ = std::fs::remove_dir_all(p);
    }
    for l in &reg.locks {
        let _ = std::fs::remove_file(l);
    }
    let name = if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
    eprintln!("simreg: interrupted by {name}: work in progress removed");
    std::process::exit(128 + sig)
}

/// Whether process `pid` is running (a zombie, exited but not yet reaped, is not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(s) => s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// What is removed on a signal while this guard lives (dropping it unregisters).
pub struct Registered {
    kind: Kind,
}

enum Kind {
    Partial(PathBuf),
    Lock(PathBuf),
    Child(u32),
}

/// Removes `dir` (a stage's `<out>.partial`) on a signal.
pub fn remove_on_signal(dir: &Path) -> Registered {
    registry().partials.push(dir.to_path_buf());
    Registered { kind: Kind::Partial(dir.to_path_buf()) }
}

/// Removes the lock file `path` on a signal.
pub(crate) fn unlock_on_signal(path: &Path) -> Registered {
    registry().locks.push(path.to_path_buf());
    Registered { kind: Kind::Lock(path.to_path_buf()) }
}

/// Terminates child `pid` on a signal, and waits for it before exiting.
pub fn terminate_on_signal(pid: u32) -> Registered {
    registry().children.push(pid);
    Registered { kind: Kind::Child(pid) }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut reg = registry();
        match &self.kind {
            Kind::Partial(p) => remove_one(&mut reg.partials, p),
            Kind::Lock(p) => remove_one(&mut reg.locks, p),
            Kind::Child(pid) => remove_one(&mut reg.children, pid),
        }
    }
}

fn remove_one<T: PartialEq>(v: &mut Vec<T>, x: &T) {
    if let Some(i) = v.iter().position(|y| y == x) {
        v.remove(i);
    }
}

/// Makes a command's child receive SIGTERM when the thread that started it dies, however it
/// dies (PR_SET_PDEATHSIG): a killed `simreg` never leaves `simreg-learn` training on. Start
/// such children from long-lived threads (the main thread, rayon's workers).
#[cfg(target_os = "linux")]
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid before the fork; prctl/getppid/_exit are async-signal-safe.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            // The parent died before prctl took effect: nobody will signal this child.
            if libc::getppid() != parent {
                libc::_exit(143);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_cmd: &mut std::process::Command) {}
