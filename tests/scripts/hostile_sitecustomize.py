"""A sitecustomize that feeds premain hostile bytes from pre-main code.

Copied as `sitecustomize.py` into a PYTHONPATH directory. HOME is a directory whose name holds
a newline, quotes, a backslash, ANSI escapes and bytes that are not UTF-8; the working
directory is HOME. Environment: PREMAIN_LONG (a credential path of exactly 4095 bytes),
PREMAIN_TOOLONG (a credential-looking path beyond PATH_MAX), PREMAIN_PROGRAM (a copy of
/bin/true with a hostile name).
"""
import os
import subprocess

env = os.environb
open(os.path.join(env[b"HOME"], b".netrc"), "rb").close()
open(b".netrc", "rb").close()
open(env[b"PREMAIN_LONG"], "rb").close()
try:
    open(env[b"PREMAIN_TOOLONG"], "rb").close()
except OSError:
    pass
subprocess.run(
    [env[b"PREMAIN_PROGRAM"], b"new\nline", b'quote"back\\slash', b"\x1b[31mred\x1b[0m", b"\xff\xfe"],
    check=True,
)
subprocess.run([b"/bin/true", b"x" * 3000], check=True)
