//! The Python package, as a user gets it: `pip install ./python` into the tests' venv (maturin
//! builds the extension), then `pytest python/tests`, which compares its answers with this
//! package's `m1` binary (`$M1_CLI`) and with pyarrow, polars and DuckDB.
//!
//! The extension is built with cargo's dev profile (`MATURIN_PEP517_ARGS=--profile dev`), in the
//! same target directory as the tests, so it reuses their compiled dependencies; a user's plain
//! `pip install ./python` builds it optimized.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::Command;

#[test]
fn the_python_package_installs_and_passes_its_tests() {
    let py = support::python();
    let root = support::repo_root();
    let home = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    // The venv is shared by every test process: install under its lock, so two runs never
    // replace the package under each other.
    let _lock = support::lock_exclusive(&root.join(".venv.lock"), &root.join(".venv")).unwrap();
    // The build backend runs `maturin` from PATH: the venv's own.
    let bin = py.parent().expect("python has a directory");
    let path = std::env::join_paths(
        std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let install = Command::new(&py)
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--no-build-isolation", "--no-deps"])
        .arg(root.join("python"))
        .env("MATURIN_PEP517_ARGS", "--profile dev")
        .env("PATH", &path)
        .output()
        .expect("run pip");
    assert!(
        install.status.success(),
        "pip install ./python failed ({}):\n{}\n{}",
        install.status,
        String::from_utf8_lossy(&install.stdout),
        String::from_utf8_lossy(&install.stderr)
    );
    eprintln!("pip install ./python: {:.1} s", started.elapsed().as_secs_f64());
    let tests = Command::new(&py)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("python/tests"))
        .env("M1_CLI", env!("CARGO_BIN_EXE_m1"))
        .env("M1_HOME", home.path())
        .output()
        .expect("run pytest");
    let out = String::from_utf8_lossy(&tests.stdout);
    eprintln!("{out}");
    assert!(
        tests.status.success(),
        "pytest failed ({}):\n{out}\n{}",
        tests.status,
        String::from_utf8_lossy(&tests.stderr)
    );
}
