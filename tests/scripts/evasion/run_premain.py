"""Runs one evasion payload *pre-main*, from a .pth line.

tests/evasion.rs copies this file into a venv's site-packages as
premain_evasion_hook.py, next to aaa_evasion.pth holding the line
`import premain_evasion_hook`, so it runs inside site's exec() of that line,
before the interpreter's main code (`-c pass`). A .pth works on every CPython,
Debian's /usr/bin/python3.11 included (its stdlib sitecustomize would shadow
one on PYTHONPATH).

Without PREMAIN_EVASION in the environment it does nothing: the same venv then
runs payloads as main scripts (runtime code) for the controls. With it (JSON
{"script": PATH, "argv": [...], "out": PATH}) it sets sys.argv, runs the
script as __main__ with its stdout captured, and writes {"exit": CODE,
"stdout": TEXT} to "out". The payload's stderr goes to the process's stderr.
The variable is removed first, so no child runs the payload again.
"""
import os

_CONFIG = os.environ.pop("PREMAIN_EVASION", None)


def _run(config):
    import contextlib
    import io
    import json
    import runpy
    import sys
    import traceback

    missing = object()
    saved = getattr(sys, "argv", missing)
    sys.argv = [config["script"]] + list(config["argv"])
    captured = io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(captured):
            runpy.run_path(config["script"], run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            sys.stderr.write("%s\n" % (exc.code,))
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        if saved is missing:
            del sys.argv
        else:
            sys.argv = saved
    with open(config["out"], "w") as out:
        json.dump({"exit": code, "stdout": captured.getvalue()}, out)


if _CONFIG:
    import json as _json

    _run(_json.loads(_CONFIG))
