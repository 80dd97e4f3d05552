//! Every alert carries the Python stack of the thread that acted, walked in the kernel at the
//! syscall: on every CPython present, a `.pth` payload's and a module-level payload's alerts
//! name the payload's function and the exact line (found in the source by a marker comment),
//! and the programs a payload starts through `os.system` (a shell, and what the shell runs)
//! carry the stack of the Python code that started them.
//!
//! One premain for the whole file; each interpreter runs one process whose user site-packages
//! holds the payloads (a `.pth` line and an imported package).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
};

use integration_tests::{Premain, Python, TempDir, clean, corpus::bait_home, pythons};
use serde_json::Value;

/// The `.pth` line's module: reads a credential, then runs a shell that runs `cat` on it.
const PTH_PAYLOAD: &str = r#"# Start-up payload, imported by a .pth line.
import os


def steal_aws():
    with open(os.path.join(os.path.expanduser("~"), ".aws", "credentials")) as f:  # MARK read
        return f.read()


def run_helper():
    os.system('/bin/cat "$HOME/.aws/credentials" >/dev/null; true')  # MARK system


def main():
    steal_aws()  # MARK calls-read
    run_helper()


main()
"#;

/// Module-level code of a package the application imports.
const MODULE_PAYLOAD: &str = r#"# Import-time payload: module-level code.
import os

with open(os.path.expanduser("~/.netrc")) as f:  # MARK module-read
    f.read()
"#;

/// The site-packages of `python` under `home`'s user base, with the payloads, a `.pth` that
/// imports the first and a RECORD that names their distribution.
fn install(home: &Path, py: &Python) -> PathBuf {
    let (major, minor) = py.version;
    let site = home.join(format!(".local/lib/python{major}.{minor}/site-packages"));
    fs::create_dir_all(site.join("stack_import")).unwrap();
    fs::create_dir_all(site.join("evil_stack-1.0.dist-info")).unwrap();
    fs::write(site.join("aaa_evil_stack.pth"), "import stack_payload\n").unwrap();
    fs::write(site.join("stack_payload.py"), PTH_PAYLOAD).unwrap();
    fs::write(site.join("stack_import/__init__.py"), MODULE_PAYLOAD).unwrap();
    fs::write(
        site.join("evil_stack-1.0.dist-info/METADATA"),
        "Metadata-Version: 2.1\nName: evil-stack\nVersion: 1.0\n",
    )
    .unwrap();
    fs::write(
        site.join("evil_stack-1.0.dist-info/RECORD"),
        "aaa_evil_stack.pth,,\nstack_payload.py,,\nstack_import/__init__.py,,\nevil_stack-1.0.dist-info/RECORD,,\n",
    )
    .unwrap();
    site
}

/// The 1-based line of `file` holding `# MARK <mark>`.
fn line_of(file: &Path, mark: &str) -> u64 {
    let text = fs::read_to_string(file).unwrap();
    let needle = format!("# MARK {mark}");
    let at =
        text.lines().position(|l| l.ends_with(&needle)).unwrap_or_else(|| panic!("{needle} in {file:?}"));
    at as u64 + 1
}

/// The alert `pred` picks among those of the process tree rooted at `root`.
fn alert(premain: &Premain, what: &str, root: u32, pred: impl Fn(&Value) -> bool) -> Value {
    premain.wait_for(what, |v| {
        v["kind"] == "alert"
            && (v["process"]["pid"] == root
                || v["process"]["ancestry"].as_array().is_some_and(|up| up.iter().any(|p| p["pid"] == root)))
            && pred(v)
    })
}

/// Checks that `frame` is `function` at `file`:`line`, of the `evil-stack` distribution.
fn frame_is(frame: &Value, function: &str, file: &Path, line: u64, errors: &mut Vec<String>, what: &str) {
    let want = serde_json::json!({
        "function": function,
        "file": file.to_str().unwrap(),
        "line": line,
        "distribution": "evil-stack",
    });
    if *frame != want {
        errors.push(format!("{what}: frame {frame} is not {want}"));
    }
}

/// A walked stack: no error, not cut.
fn whole(alert: &Value, errors: &mut Vec<String>, what: &str) {
    if alert.get("stack_error").is_some() || alert.get("stack_truncated").is_some() {
        errors.push(format!(
            "{what}: stack_error {} stack_truncated {}",
            alert["stack_error"], alert["stack_truncated"]
        ));
    }
    if alert["stack"].as_array().is_none_or(Vec::is_empty) {
        errors.push(format!("{what}: no stack (rule {}, action {})", alert["rule"], alert["action"]));
    }
}

fn has_frame(alert: &Value, pred: impl Fn(&Value) -> bool) -> bool {
    alert["stack"].as_array().is_some_and(|frames| frames.iter().any(pred))
}

#[test]
fn alerts_name_the_payload_function_and_line_on_every_cpython() {
    let pythons = pythons();
    assert!(!pythons.is_empty(), "no CPython 3.8+ here");
    let premain = Premain::start_alerts(&[]);
    let mut errors = Vec::new();
    for py in &pythons {
        let dir = TempDir::new("stacks");
        let home = bait_home(dir.path());
        let site = install(&home, py);
        let payload = site.join("stack_payload.py");
        let module = site.join("stack_import/__init__.py");
        let status = clean(&py.path)
            .args(["-c", "import stack_import"])
            .env("HOME", &home)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python");
        let root = status.id();
        assert!(status.wait_with_output().unwrap().status.success(), "[{}] the application failed", py.label);
        let label = &py.label;
        let aws = home.join(".aws/credentials");

        // The .pth payload's read: its function and line, its caller, and site running the line.
        let what = format!("[{label}] .pth credential read");
        let read = alert(&premain, &what, root, |v| {
            v["process"]["pid"] == root && v["action"]["path"] == aws.to_str().unwrap()
        });
        whole(&read, &mut errors, &what);
        frame_is(&read["stack"][0], "steal_aws", &payload, line_of(&payload, "read"), &mut errors, &what);
        frame_is(&read["stack"][1], "main", &payload, line_of(&payload, "calls-read"), &mut errors, &what);
        if !has_frame(&read, |f| f["function"] == "addpackage") {
            errors.push(format!("{what}: no frame of site's addpackage in {}", read["stack"]));
        }

        // The shell os.system runs: the stack of the code that ran it, read in the child.
        let what = format!("[{label}] os.system's shell");
        let shell =
            alert(&premain, &what, root, |v| v["rule"] == "program-exec" && v["action"]["path"] == "/bin/sh");
        whole(&shell, &mut errors, &what);
        frame_is(&shell["stack"][0], "run_helper", &payload, line_of(&payload, "system"), &mut errors, &what);
        if shell.get("stack_inherited_from").is_some() {
            errors.push(format!("{what}: the exec's own stack is said to be inherited"));
        }

        // What the shell runs, and what that reads: the same stack, inherited from the shell.
        let shell_pid = shell["process"]["pid"].clone();
        for (what, pred) in [
            (
                format!("[{label}] the shell's cat"),
                Box::new(|v: &Value| v["rule"] == "program-exec" && v["action"]["path"] == "/bin/cat")
                    as Box<dyn Fn(&Value) -> bool>,
            ),
            (
                format!("[{label}] cat's credential read"),
                Box::new(|v: &Value| {
                    v["rule"] == "credential-read"
                        && v["process"]["pid"] != root
                        && v["action"]["path"] == aws.to_str().unwrap()
                }),
            ),
        ] {
            let descendant = alert(&premain, &what, root, pred);
            if descendant["stack"] != shell["stack"] || descendant["stack_inherited_from"] != shell_pid {
                errors.push(format!(
                    "{what}: stack {} inherited from {}, not the shell's {} from {shell_pid}",
                    descendant["stack"], descendant["stack_inherited_from"], shell["stack"]
                ));
            }
        }

        // Module-level code of an imported package: `<module>` at its line, below the `-c`.
        let what = format!("[{label}] module-level credential read");
        let netrc = home.join(".netrc");
        let import = alert(&premain, &what, root, |v| {
            v["process"]["pid"] == root && v["action"]["path"] == netrc.to_str().unwrap()
        });
        whole(&import, &mut errors, &what);
        frame_is(
            &import["stack"][0],
            "<module>",
            &module,
            line_of(&module, "module-read"),
            &mut errors,
            &what,
        );
        let frames = import["stack"].as_array().cloned().unwrap_or_default();
        let outermost = frames.last().cloned().unwrap_or_default();
        if (&outermost["function"], &outermost["file"], &outermost["line"])
            != (&"<module>".into(), &"<string>".into(), &1.into())
        {
            errors.push(format!("{what}: the outermost frame {outermost} is not the -c command's"));
        }
        eprintln!("[{label}] stacks checked ({} frames at the module-level read)", frames.len());
    }
    drop(premain);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
