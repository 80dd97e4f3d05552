//! For unit tests that need something from the machine: the same rules as the integration
//! tests (`tests/support`), a missing program or file fails the test unless
//! `PREMAIN_TEST_ALLOW_SKIP=1` is set.

use std::{env, fs, path::PathBuf, process::Command};

/// A program the test runs, as `cargo xtask setup` provides it; panics naming it when missing.
pub(crate) fn program(name: &str) -> Command {
    let tools = env::var_os("PREMAIN_TOOLS").map(|t| PathBuf::from(t).join("bin"));
    let path = env::var_os("PATH").unwrap_or_default();
    let found = tools
        .into_iter()
        .chain(env::split_paths(&path))
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: `cargo xtask setup` provides it"));
    Command::new(found)
}

/// This test cannot run its check here: a failure unless `PREMAIN_TEST_ALLOW_SKIP=1`, and then
/// listed by `cargo xtask test` as skipped. Call as `return cannot_run(...)`.
pub(crate) fn cannot_run(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    if env::var("PREMAIN_TEST_ALLOW_SKIP").as_deref() != Ok("1") {
        panic!("{test} cannot run: {reason} (PREMAIN_TEST_ALLOW_SKIP=1 skips it)");
    }
    eprintln!("SKIPPED: {test}: {reason}");
    if let Some(log) = env::var_os("PREMAIN_SKIP_LOG") {
        use std::io::Write as _;
        if let Ok(mut file) = fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(file, "{test}: {reason}");
        }
    }
}

/// Every pyenv CPython 3 (`$PYENV_ROOT` or `~/.pyenv`), as `(bin/python3.N, (3, N))`, oldest first.
pub(crate) fn pyenv_pythons() -> Vec<(PathBuf, (u8, u8))> {
    let root = env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"));
    let entries = fs::read_dir(root.join("versions")).into_iter().flatten().flatten();
    let mut found: Vec<_> = entries
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let minor: u8 = name.strip_prefix("3.")?.split('.').next()?.parse().ok()?;
            let exe = e.path().join(format!("bin/python3.{minor}"));
            exe.exists().then_some((exe, (3, minor)))
        })
        .collect();
    found.sort_by_key(|&(_, version)| version);
    found
}

/// Every CPython 3.8+ here: pyenv's and Debian's `/usr/bin/python3.11`, oldest first.
pub(crate) fn every_cpython() -> Vec<(PathBuf, (u8, u8))> {
    let mut pythons: Vec<_> = pyenv_pythons().into_iter().filter(|(_, v)| *v >= (3, 8)).collect();
    let debian = PathBuf::from("/usr/bin/python3.11");
    if debian.exists() {
        pythons.push((debian, (3, 11)));
    }
    pythons
}
