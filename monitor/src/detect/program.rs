//! `program-exec`: an exec, successful or refused, of a program pre-main code may not run.
//! Programs are allowed by identity, never by name (see `identity`): the path run, or the file
//! it leads to, matches an allowed glob, and only root can have decided what that path names.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::process::table::Resolution;

pub(super) struct Programs {
    /// What pre-main code may run in any phase (`allow.programs`).
    allowed: GlobSet,
    /// What install-time code may also run (`install.toolchain`).
    toolchain: GlobSet,
    /// The system's shells, run by a build system for its recipes.
    shells: GlobSet,
}

/// One exec, as the rule weighs it.
pub(super) struct Exec<'a> {
    /// The program, made absolute; `resolution` says how.
    pub(super) path: &'a Path,
    pub(super) resolution: Resolution,
    pub(super) result: i64,
    /// Part of a package installation (the `install` phase).
    pub(super) installing: bool,
}

impl Programs {
    pub(super) fn compile(allowed: &[&str], toolchain: &[&str]) -> Result<Self, String> {
        Ok(Self { allowed: glob_set(allowed)?, toolchain: glob_set(toolchain)?, shells: glob_set(SHELLS)? })
    }

    /// Whether `exec` runs a program against the rule; `system_file` finds the file a path
    /// leads to when only root can have put it there (`identity::system_program`), asked only
    /// when an allowlist could apply; `runner` finds, the same way, the program of the process
    /// that made the exec (its parent's image), asked only for a shell during an install.
    pub(super) fn run(
        &self,
        exec: &Exec,
        system_file: impl Fn(&Path) -> Option<PathBuf>,
        runner: impl FnOnce() -> Option<PathBuf>,
    ) -> bool {
        // A PATH search tries every directory: the misses are not programs run.
        const ENOENT: i64 = 2;
        const ENOTDIR: i64 = 20;
        if exec.result == -ENOENT || exec.result == -ENOTDIR {
            return false;
        }
        let installing = exec.installing && !self.toolchain.is_empty();
        // A relative path was joined to a working directory read after the exec, which the
        // program may have changed by then: it names nothing for sure.
        if (self.allowed.is_empty() && !installing) || exec.resolution != Resolution::Absolute {
            return true;
        }
        let Some(file) = system_file(exec.path) else { return true };
        let allowed =
            |path: &Path| self.allowed.is_match(path) || (installing && self.toolchain.is_match(path));
        if allowed(exec.path) || allowed(&file) {
            return false;
        }
        // make, cmake and ninja run every recipe through `/bin/sh -c`: that shell is the build
        // system's, and what it runs is judged on its own. A shell that Python code runs is
        // still an alert: it can run anything.
        let recipe_shell = installing
            && (self.shells.is_match(exec.path) || self.shells.is_match(&file))
            && runner().is_some_and(|runner| self.toolchain.is_match(&runner));
        !recipe_shell
    }
}

/// The system's shells, as root installed them.
const SHELLS: &[&str] = &["/{usr/,}bin/{sh,dash,bash}"];

/// A glob of `allow.programs` or `install.toolchain`: `*` and `?` stay within one directory,
/// `{,x}` lists an empty alternative.
pub(crate) fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).empty_alternates(true).build()
}

fn glob_set(patterns: &[&str]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(glob(pattern).map_err(|e| format!("bad glob {pattern:?}: {}", e.kind()))?);
    }
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::detect::{
        catalogue::{BENIGN_PROGRAMS, TOOLCHAIN},
        identity::system_file,
    };

    fn defaults() -> Programs {
        Programs::compile(BENIGN_PROGRAMS, TOOLCHAIN).unwrap()
    }

    fn exec(path: &str, installing: bool) -> Exec<'_> {
        Exec { path: Path::new(path), resolution: Resolution::Absolute, result: 0, installing }
    }

    fn alerts(programs: &Programs, exec: &Exec) -> bool {
        programs.run(exec, |path| system_file(Path::new("/"), path), || None)
    }

    fn alerts_run_by(programs: &Programs, exec: &Exec, runner: &str) -> bool {
        programs.run(
            exec,
            |path| system_file(Path::new("/"), path),
            || system_file(Path::new("/"), Path::new(runner)),
        )
    }

    #[test]
    fn the_toolchain_globs_name_what_builds_run() {
        let set = glob_set(TOOLCHAIN).unwrap();
        for path in [
            "/usr/bin/cc",
            "/usr/bin/gcc",
            "/usr/bin/gcc-12",
            "/usr/bin/x86_64-linux-gnu-gcc-12",
            "/usr/bin/x86_64-linux-gnu-g++",
            "/usr/bin/aarch64-linux-gnu-gcc",
            "/usr/bin/x86_64-redhat-linux-gcc",
            "/usr/bin/clang-16",
            "/usr/lib/llvm-16/bin/clang",
            "/usr/lib/gcc/x86_64-linux-gnu/12/cc1",
            "/usr/lib/gcc/x86_64-linux-gnu/12/cc1plus",
            "/usr/lib/gcc/x86_64-linux-gnu/12/collect2",
            "/usr/libexec/gcc/x86_64-redhat-linux/13/cc1",
            "/usr/bin/as",
            "/usr/bin/x86_64-linux-gnu-as",
            "/usr/bin/x86_64-linux-gnu-ld.bfd",
            "/usr/bin/ld.gold",
            "/usr/bin/gcc-ar-12",
            "/usr/bin/make",
            "/usr/bin/cmake",
            "/usr/bin/ninja",
            "/usr/bin/pkgconf",
            "/usr/bin/x86_64-linux-gnu-pkg-config",
            "/usr/bin/swig4.0",
            "/usr/bin/git",
            "/usr/bin/rustc",
        ] {
            assert!(set.is_match(path), "{path}");
        }
        for path in [
            "/usr/bin/sh",
            "/bin/sh",
            "/usr/bin/bash",
            "/usr/bin/dash",
            "/usr/bin/curl",
            "/usr/bin/python3",
            "/usr/bin/cython",
            "/usr/bin/env",
            "/tmp/gcc",
            "/usr/bin/x/gcc",
            "/usr/lib/gcc/x86_64-linux-gnu/12/plugin/cc1",
            "/usr/bin/gcc.sh",
        ] {
            assert!(!set.is_match(path), "{path}");
        }
    }

    #[test]
    fn system_helpers_are_allowed_by_path_and_identity() {
        let programs = defaults();
        assert!(!alerts(&programs, &exec("/usr/bin/uname", false)));
        assert!(!alerts(&programs, &exec("/bin/uname", false)), "/bin/uname leads to /usr/bin/uname");
        assert!(alerts(&programs, &exec("/usr/bin/curl", false)));
        // A copy of uname under /tmp is a program called uname, nothing more.
        let dir = Path::new("/tmp").join(format!("premain-program-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("uname");
        fs::copy("/usr/bin/uname", &fake).unwrap();
        assert!(alerts(&programs, &exec(fake.to_str().unwrap(), false)));
        let _ = fs::remove_dir_all(&dir);
        // What the walk could not tell (a process gone, a mount that does not answer) is not
        // a system file.
        assert!(programs.run(&exec("/usr/bin/uname", false), |_| None, || None));
        let relative = Exec { resolution: Resolution::Cwd, ..exec("/usr/bin/uname", false) };
        assert!(alerts(&programs, &relative), "a path joined to a working directory read later");
        // A PATH search's misses are not runs, of anything.
        assert!(!alerts(&programs, &Exec { result: -2, ..exec("/tmp/x/uname", false) }));
    }

    #[test]
    fn the_toolchain_is_allowed_during_installs_only() {
        let programs = defaults();
        let gcc = fs::canonicalize("/usr/bin/gcc").expect("gcc");
        for path in ["/usr/bin/gcc", "/usr/bin/cc", gcc.to_str().unwrap()] {
            assert!(!alerts(&programs, &exec(path, true)), "{path} installing");
            assert!(alerts(&programs, &exec(path, false)), "{path} at start-up");
        }
        assert!(alerts(&programs, &exec("/usr/bin/curl", true)));
        assert!(alerts(&programs, &exec("/bin/sh", true)), "shells run anything");
        let none = Programs::compile(BENIGN_PROGRAMS, &[]).unwrap();
        assert!(alerts(&none, &exec("/usr/bin/gcc", true)), "an empty toolchain");
    }

    #[test]
    fn a_build_systems_recipe_shell_is_part_of_the_install() {
        let programs = defaults();
        for shell in ["/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/dash"] {
            assert!(!alerts_run_by(&programs, &exec(shell, true), "/usr/bin/make"), "{shell} run by make");
            assert!(
                alerts_run_by(&programs, &exec(shell, false), "/usr/bin/make"),
                "{shell} outside installs"
            );
            assert!(
                alerts_run_by(&programs, &exec(shell, true), "/usr/bin/python3"),
                "{shell} run by Python"
            );
        }
        assert!(
            alerts_run_by(&programs, &exec("/usr/bin/curl", true), "/usr/bin/make"),
            "what a recipe runs"
        );
        // A `make` that is not the system's (no identity) vouches for nothing.
        assert!(alerts(&programs, &exec("/bin/sh", true)));
        // A shell copied elsewhere is not a shell of the system.
        let dir = Path::new("/tmp").join(format!("premain-shell-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("sh");
        fs::copy("/bin/sh", &copy).unwrap();
        assert!(alerts_run_by(&programs, &exec(copy.to_str().unwrap(), true), "/usr/bin/make"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn globs_stay_within_a_directory() {
        let set = glob_set(&["/usr/bin/*", "/usr/lib/{a,b}{,-[0-9]*}"]).unwrap();
        assert!(set.is_match("/usr/bin/uname"));
        assert!(!set.is_match("/usr/bin/x/uname"));
        assert!(set.is_match("/usr/lib/a") && set.is_match("/usr/lib/b-2"));
    }
}
