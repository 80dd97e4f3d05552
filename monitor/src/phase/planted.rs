//! Code that start-up hooks leave behind: what a `.pth` line, `sitecustomize` or
//! `usercustomize` ran, and the modules they imported, known by the globals dict it runs with.
//!
//! Start-up code can plant functions that run long after main started: an `atexit` handler, a
//! patched `json.loads`, a `sys.meta_path` finder, a signal handler, `sys.excepthook`, a codec
//! search function. They run from the main thread in `runtime`, outside any module body, so
//! their thread's phase says nothing. But a function keeps the globals dict of the code that
//! defined it, and every frame running it has that dict as its `f_globals`: so the globals
//! dicts of the code hooks ran (`PyEval_EvalCode`'s second argument, which the probe sends)
//! name the planted code in any later stack.
//!
//! - A `.pth` line runs in `site`'s namespace (`exec(line)` in `site.addpackage`): every
//!   function it defines has `site`'s globals. `site`'s own functions have them too, so those
//!   frames (of `site`'s file) are not planted code.
//! - `sitecustomize` / `usercustomize` and every module a hook imported run in a namespace of
//!   their own: all of their functions are planted code.
//! - The standard library is not planted code, whoever imported it first: a hook that imports
//!   `socket` does not make the application's later use of `socket` the hook's. It is the
//!   directory `encodings` was loaded from before any hook ran (so a hook cannot pass a
//!   directory of its own off as the standard library), and frozen modules.

use std::{
    collections::HashMap,
    ffi::OsStr,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use super::{Culprit, CulpritKind, party};
use crate::python::dist::site_dir;

/// The hooks and planted code of one process (copied to a forked child, whose memory is a
/// copy; started afresh at exec).
#[derive(Clone, Debug, Default)]
pub(crate) struct Planted {
    /// The interpreter's standard library (`…/lib/pythonX.Y`), once seen.
    stdlib: Option<PathBuf>,
    /// A hook has run code (a `.pth` line or a customize module outside the standard library).
    hooked: bool,
    /// By the address of the globals dict.
    namespaces: HashMap<u64, Namespace>,
}

/// A globals dict that start-up hooks ran code with.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Namespace {
    /// The hooks that ran code in it, in order: one for a module's namespace, every `.pth`
    /// with an executable line for `site`'s.
    hooks: Vec<Hook>,
    /// The planted module whose namespace it is (`None`: code run in another module's
    /// namespace, such as `site`'s, or in a dict of its own).
    module: Option<PathBuf>,
    /// The file of the module that owns the namespace, when that module is not planted
    /// (`site`): its own frames are not planted code.
    owner: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Hook {
    kind: CulpritKind,
    path: Option<PathBuf>,
}

/// A frame of a stack, as the matching needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StackFrame<'a> {
    /// `f_globals`.
    pub globals: u64,
    /// `co_filename`.
    pub file: &'a [u8],
    /// `co_qualname` / `co_name`.
    pub function: &'a str,
}

/// The innermost planted frame of a stack and whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    /// Its index in the stack (innermost first).
    pub index: usize,
    /// The hook: kind and file (the `.pth`, `sitecustomize.py`...), and the planted module
    /// the frame's code belongs to, when it is one.
    pub culprit: Culprit,
}

/// A code object a start-up hook is running, as [`Planted::entered`] is told of it.
pub(crate) struct Entered<'a> {
    pub globals: u64,
    /// `co_filename`, as claimed (`<string>` for a `.pth` line).
    pub claim: Option<&'a Path>,
    /// The file its code was loaded from, when known.
    pub file: Option<&'a Path>,
    /// Whether it is a module body (else the `exec` of a string).
    pub module: bool,
}

impl Planted {
    /// Start-up hooks ran code: the process must stay recorded after main, so that its later
    /// actions reach the engine with their stacks.
    pub(crate) fn hooked(&self) -> bool {
        self.hooked
    }

    /// A code object starts during start-up. `culprit` is the start-up culprit with it on the
    /// stack, `outer` the globals of the frames below it (innermost first) with their claims.
    pub(crate) fn entered(&mut self, code: &Entered<'_>, culprit: &Culprit, outer: &[(u64, Option<&Path>)]) {
        let by_hook = matches!(
            culprit.kind,
            CulpritKind::Pth | CulpritKind::Sitecustomize | CulpritKind::Usercustomize
        );
        if !by_hook {
            if self.stdlib.is_none() && !self.hooked && code.module {
                self.stdlib = code.file.and_then(encodings_home);
            }
            return;
        }
        if code.module && code.file.is_some_and(|f| self.standard_library(f)) {
            // Debian's `sitecustomize` (in the standard library), `os`, `socket`: the
            // interpreter's own code.
            return;
        }
        self.hooked = true;
        let hook = Hook { kind: culprit.kind, path: culprit.path.clone() };
        if let Some(known) = self.namespaces.get_mut(&code.globals) {
            if !known.hooks.contains(&hook) {
                known.hooks.push(hook);
            }
            return;
        }
        let (module, owner) = if code.module {
            (Some(code.file.or(code.claim).map(Path::to_path_buf).unwrap_or_default()), None)
        } else {
            // An `exec` of a string: in the namespace of the module running it (`site`, for a
            // `.pth` line), else in a dict of its own.
            let owner = outer.iter().find(|(g, _)| *g == code.globals).and_then(|(_, claim)| *claim);
            (None, owner.map(|o| o.as_os_str().as_bytes().to_vec()))
        };
        if code.globals != 0 {
            self.namespaces.insert(code.globals, Namespace { hooks: vec![hook], module, owner });
        }
    }

    /// The innermost frame of `stack` (innermost first) that runs code a start-up hook
    /// planted. `pth_text` reads a `.pth` file, to tell which of several hooks that ran code in
    /// `site`'s namespace defined the frame's function.
    pub(crate) fn find<'a>(
        &self,
        stack: impl IntoIterator<Item = StackFrame<'a>>,
        pth_text: impl Fn(&Path) -> Option<Vec<u8>>,
    ) -> Option<Found> {
        stack.into_iter().enumerate().find_map(|(index, frame)| {
            let space = self.namespaces.get(&frame.globals).filter(|_| frame.globals != 0)?;
            if space.owner.as_deref() == Some(frame.file) {
                return None;
            }
            let hook = space.pick(frame.function, &pth_text);
            let culprit = Culprit {
                kind: hook.kind,
                path: hook.path.clone(),
                module_file: space.module.clone().filter(|m| !m.as_os_str().is_empty()),
                ..Culprit::default()
            };
            Some(Found { index, culprit })
        })
    }

    fn standard_library(&self, file: &Path) -> bool {
        let bytes = file.as_os_str().as_bytes();
        if bytes.starts_with(b"<frozen ") {
            return true;
        }
        match &self.stdlib {
            Some(dir) => file.starts_with(dir) && site_dir(file).is_none(),
            None => party::of_file(file) == party::Party::Interpreter,
        }
    }
}

impl Namespace {
    /// The hook that defined `function` here: the only one, else the one `.pth` whose text
    /// names it (`lambda` for a `<lambda>`), else the first.
    fn pick(&self, function: &str, pth_text: &impl Fn(&Path) -> Option<Vec<u8>>) -> &Hook {
        if self.hooks.len() > 1 {
            let name = function.rsplit('.').next().unwrap_or(function);
            let word = if name == "<lambda>" { "lambda" } else { name };
            let mut naming = self.hooks.iter().filter(|h| {
                h.path.as_deref().and_then(pth_text).is_some_and(|text| contains_word(&text, word.as_bytes()))
            });
            if let (Some(one), None) = (naming.next(), naming.next()) {
                return one;
            }
        }
        &self.hooks[0]
    }
}

/// Whether `text` has `word` with no identifier character right before or after it.
fn contains_word(text: &[u8], word: &[u8]) -> bool {
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !word.is_empty()
        && text.windows(word.len()).enumerate().any(|(i, w)| {
            w == word
                && (i == 0 || !ident(text[i - 1]))
                && text.get(i + word.len()).is_none_or(|b| !ident(*b))
        })
}

/// `…/lib/pythonX.Y` when `file` is that directory's `encodings/__init__.py`, the first
/// package the interpreter imports from its standard library.
fn encodings_home(file: &Path) -> Option<PathBuf> {
    let package = file.parent()?;
    let ok = file.file_name() == Some(OsStr::new("__init__.py"))
        && package.file_name() == Some(OsStr::new("encodings"));
    ok.then(|| package.parent().map(Path::to_path_buf)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: u64 = 0x7f00_1000;
    const EVIL: u64 = 0x7f00_2000;
    const FRESH: u64 = 0x7f00_3000;
    const APP: u64 = 0x7f00_4000;

    fn pth(path: &str) -> Culprit {
        Culprit { kind: CulpritKind::Pth, path: Some(path.into()), ..Culprit::default() }
    }

    fn module<'a>(globals: u64, file: &'a str) -> Entered<'a> {
        Entered { globals, claim: Some(Path::new(file)), file: Some(Path::new(file)), module: true }
    }

    fn string(globals: u64) -> Entered<'static> {
        Entered { globals, claim: Some(Path::new("<string>")), file: None, module: false }
    }

    fn frame<'a>(globals: u64, file: &'a str, function: &'a str) -> StackFrame<'a> {
        StackFrame { globals, file: file.as_bytes(), function }
    }

    /// What a start-up with a `.pth` line that imports `evil` leaves.
    fn started() -> Planted {
        let mut p = Planted::default();
        let none = Culprit::default();
        p.entered(&module(0x10, "/usr/lib/python3.12/encodings/__init__.py"), &none, &[]);
        p.entered(&module(SITE, "<frozen site>"), &none, &[]);
        let hook = pth("/venv/site-packages/aaa_evil.pth");
        let outer = [(SITE, Some(Path::new("<frozen site>")))];
        p.entered(&string(SITE), &hook, &outer);
        p.entered(&module(EVIL, "/venv/site-packages/evil.py"), &hook, &outer);
        // What evil imports from the standard library is not evil's.
        p.entered(&module(0x50, "/usr/lib/python3.12/json/__init__.py"), &hook, &outer);
        p.entered(&module(0x51, "<frozen os>"), &hook, &outer);
        p
    }

    #[test]
    fn a_function_a_pth_line_or_its_module_defined_is_planted_wherever_it_runs() {
        let p = started();
        assert!(p.hooked());
        let none = |_: &Path| None;
        // A patched json.loads defined in evil, called by the application's main code.
        let stack = [
            frame(0x60, "/usr/lib/python3.12/socket.py", "create_connection"),
            frame(EVIL, "/venv/site-packages/evil.py", "loads"),
            frame(APP, "/srv/app.py", "<module>"),
        ];
        let found = p.find(stack, none).expect("planted");
        assert_eq!(found.index, 1);
        assert_eq!(found.culprit.kind, CulpritKind::Pth);
        assert_eq!(found.culprit.path.as_deref(), Some(Path::new("/venv/site-packages/aaa_evil.pth")));
        assert_eq!(found.culprit.module_file.as_deref(), Some(Path::new("/venv/site-packages/evil.py")));
        // An atexit lambda of the line itself: site's namespace, another file than site's.
        let found = p.find([frame(SITE, "<string>", "<lambda>")], none).expect("planted");
        assert_eq!(found.culprit.module_file, None);
        // site's own functions, the standard library and the application are not planted.
        assert_eq!(p.find([frame(SITE, "<frozen site>", "getsitepackages")], none), None);
        assert_eq!(p.find([frame(0x50, "/usr/lib/python3.12/json/__init__.py", "loads")], none), None);
        assert_eq!(p.find([frame(APP, "/srv/app.py", "main"), frame(0, "?", "?")], none), None);
    }

    #[test]
    fn code_run_in_a_dict_of_its_own_is_planted_and_a_fresh_process_has_none() {
        let mut p = started();
        let hook = pth("/venv/site-packages/aaa_evil.pth");
        p.entered(&string(FRESH), &hook, &[(EVIL, Some(Path::new("/venv/site-packages/evil.py")))]);
        let found = p.find([frame(FRESH, "<string>", "steal")], |_| None).expect("planted");
        assert_eq!(found.culprit.path, hook.path);
        assert!(!Planted::default().hooked());
        assert_eq!(Planted::default().find([frame(SITE, "<string>", "f")], |_| None), None);
    }

    #[test]
    fn customize_modules_are_hooks_unless_they_are_the_interpreters_own() {
        let mut p = Planted::default();
        let none = Culprit::default();
        p.entered(&module(0x10, "/usr/lib/python3.11/encodings/__init__.py"), &none, &[]);
        // Debian's sitecustomize lives in the standard library.
        let debian = Culprit {
            kind: CulpritKind::Sitecustomize,
            path: Some("/usr/lib/python3.11/sitecustomize.py".into()),
            ..Culprit::default()
        };
        p.entered(&module(0x20, "/usr/lib/python3.11/sitecustomize.py"), &debian, &[]);
        assert!(!p.hooked());
        let user = Culprit {
            kind: CulpritKind::Usercustomize,
            path: Some("/home/u/.local/lib/python3.11/site-packages/usercustomize.py".into()),
            ..Culprit::default()
        };
        p.entered(&module(0x30, "/home/u/.local/lib/python3.11/site-packages/usercustomize.py"), &user, &[]);
        assert!(p.hooked());
        let found = p.find([frame(0x30, "x", "handler")], |_| None).expect("planted");
        assert_eq!(found.culprit.kind, CulpritKind::Usercustomize);
    }

    #[test]
    fn a_directory_made_to_look_like_the_standard_library_is_not_it() {
        let mut p = Planted::default();
        let none = Culprit::default();
        p.entered(&module(0x10, "/usr/lib/python3.12/encodings/__init__.py"), &none, &[]);
        let hook = pth("/venv/site-packages/x.pth");
        p.entered(&module(EVIL, "/tmp/lib/python3.12/evil.py"), &hook, &[]);
        assert!(p.find([frame(EVIL, "/tmp/lib/python3.12/evil.py", "f")], |_| None).is_some());
        // The base interpreter's site-packages is under its standard library's directory.
        p.entered(&module(0x70, "/usr/lib/python3.12/site-packages/evil2.py"), &hook, &[]);
        assert!(p.find([frame(0x70, "/usr/lib/python3.12/site-packages/evil2.py", "f")], |_| None).is_some());
    }

    #[test]
    fn of_several_pth_lines_in_sites_namespace_the_one_that_names_the_function_is_the_culprit() {
        let mut p = Planted::default();
        let outer = [(SITE, Some(Path::new("<frozen site>")))];
        for path in ["/s/distutils-precedence.pth", "/s/aaa_atexit.pth", "/s/zzz_codec.pth"] {
            p.entered(&string(SITE), &pth(path), &outer);
        }
        let text = |path: &Path| -> Option<Vec<u8>> {
            Some(match path.to_str()? {
                "/s/aaa_atexit.pth" => b"import atexit; atexit.register(lambda: steal())".to_vec(),
                "/s/zzz_codec.pth" => b"exec('def premain_search(name):\\n ...')".to_vec(),
                _ => b"import os; var = 'SETUPTOOLS_USE_DISTUTILS'".to_vec(),
            })
        };
        let path =
            |function| p.find([frame(SITE, "<string>", function)], text).unwrap().culprit.path.unwrap();
        assert_eq!(path("<lambda>"), Path::new("/s/aaa_atexit.pth"));
        assert_eq!(path("premain_search"), Path::new("/s/zzz_codec.pth"));
        // `search` is part of no word of any text: the first is named.
        assert_eq!(path("search"), Path::new("/s/distutils-precedence.pth"));
    }

    #[test]
    fn words_are_whole_identifiers() {
        assert!(contains_word(b"def f(): pass", b"f"));
        assert!(contains_word(b"x=lambda: 1", b"lambda"));
        assert!(!contains_word(b"def ff(): pass", b"f"));
        assert!(!contains_word(b"", b""));
    }
}
