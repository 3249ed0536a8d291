//! The Python the tests check our output against — anndata (`read_zarr`/`read_h5ad`),
//! zarr-python and cellucid 0.9.5 — provisioned by the tests themselves, so a bare `cargo test`
//! runs every check.
//!
//! Resolution, per [`Need`]:
//! 1. the interpreter named by the need's environment variable (`CELLUCID_TEST_PYTHON`,
//!    `CELLUCID_095_PYTHON`), which must then have the modules (a wrong one fails the test);
//! 2. otherwise one virtualenv under the target directory (`<target>/test-python/venv`),
//!    created on first use by `tests/tools/test-python.sh` with the pins of
//!    `tests/tools/requirements*.txt` — once, guarded by a file lock so parallel tests and test
//!    binaries create it once (about a minute and ~400 MB; `CELLUCID_TEST_PROVISION=0` turns
//!    creation off). `.ci/run` starts the same script early, in the background.
//!
//! The S3 tests get `moto_server` the same way ([`moto_server`]): from `PATH`, else from the
//! venv.
//!
//! When neither gives an interpreter, the check cannot run: under `CI` that is a test failure;
//! elsewhere the test says so in one loud line on the real stderr (which `cargo test` shows,
//! unlike `eprintln!` output of a passing test) and returns.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// What a check needs from Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// anndata + zarr-python + h5py (reading back what we write).
    Anndata,
    /// cellucid 0.9.5 (its validators and its own generators), with anndata and zarr.
    Cellucid095,
}

impl Need {
    /// Environment variable naming an interpreter to use instead of the provisioned venv.
    pub fn env_var(self) -> &'static str {
        match self {
            Need::Anndata => "CELLUCID_TEST_PYTHON",
            Need::Cellucid095 => "CELLUCID_095_PYTHON",
        }
    }

    /// The import statement that proves the interpreter fits.
    fn probe(self) -> &'static str {
        match self {
            Need::Anndata => "import anndata, zarr, h5py, scipy",
            Need::Cellucid095 => {
                "import anndata, zarr\n\
                 from importlib.metadata import version\n\
                 assert version('cellucid') == '0.9.5', version('cellucid')\n\
                 import cellucid._anndata_files, cellucid._contracts, cellucid.jupyter._wire"
            }
        }
    }
}

fn imports(python: &Path, need: Need) -> Result<(), String> {
    let out = Command::new(python)
        .args(["-c", need.probe()])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} lacks what {need:?} needs: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The directory cargo builds into (the test binary lives in `<target>/<profile>/deps/`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Create (or reuse) the test venv with `tests/tools/test-python.sh` (pins in
/// `tests/tools/requirements*.txt`), under a lock so one process creates it; returns its
/// interpreter.
fn provision() -> Result<PathBuf, String> {
    if std::env::var("CELLUCID_TEST_PROVISION").is_ok_and(|v| v == "0") {
        return Err("creating the test venv is turned off (CELLUCID_TEST_PROVISION=0)".into());
    }
    let root = target_dir().join("test-python");
    fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    let lock_path = root.join(".lock");
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    // flock(2), as `.ci/run`'s `flock`: another process waits here, then finds the venv ready.
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    let venv = root.join("venv");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/test-python.sh");
    // Output goes to the real stderr (the script says when it creates the venv; pip's errors).
    let status = Command::new("bash")
        .arg(&script)
        .arg(&venv)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !status.success() {
        return Err(format!(
            "{} {} failed ({status}; its output is above)",
            script.display(),
            venv.display()
        ));
    }
    Ok(venv.join("bin/python"))
}

/// The provisioned venv's interpreter (created at most once per process).
fn provisioned() -> Result<PathBuf, String> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    VENV.get_or_init(provision).clone()
}

/// One line on the process's real stderr: the test harness captures `eprintln!`, not this.
pub fn write_stderr(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Say loudly that `what` did not run and why — a failure under `CI`, one line elsewhere.
pub fn not_run(what: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} must run in CI, but: {why}"
    );
    let first_line = why.lines().next().unwrap_or_default();
    write_stderr(&format!("!!! NOT RUN: {what}: {first_line}"));
}

/// The `moto_server` to start: the one on `PATH`, else the provisioned venv's (`moto[server]`
/// is in `tests/tools/requirements.txt`). `None` after reporting (see the module docs) that
/// `what` did not run.
pub fn moto_server(what: &str) -> Option<PathBuf> {
    let on_path = Command::new("sh")
        .args(["-c", "command -v moto_server"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| !p.is_empty());
    if let Some(path) = on_path {
        return Some(PathBuf::from(path));
    }
    match provisioned() {
        Ok(python) => {
            let moto = python.with_file_name("moto_server");
            if moto.exists() {
                return Some(moto);
            }
            not_run(what, &format!("{} has no moto_server", python.display()));
            None
        }
        Err(why) => {
            not_run(
                what,
                &format!("moto_server is not on PATH and the test venv is unavailable: {why}"),
            );
            None
        }
    }
}

/// The interpreter for `need`, or `None` after reporting (see the module docs) that `what`
/// did not run. An interpreter named by the environment that lacks the modules fails the test.
pub fn python(need: Need, what: &str) -> Option<PathBuf> {
    if let Some(chosen) = std::env::var_os(need.env_var()) {
        let chosen = PathBuf::from(chosen);
        if let Err(why) = imports(&chosen, need) {
            panic!("{} is set, but {why}", need.env_var());
        }
        return Some(chosen);
    }
    match provisioned().and_then(|python| imports(&python, need).map(|()| python)) {
        Ok(python) => Some(python),
        Err(why) => {
            not_run(
                what,
                &format!(
                    "no Python for {need:?} (set {} or allow the test venv): {why}",
                    need.env_var()
                ),
            );
            None
        }
    }
}
