"""A sitecustomize that renames its thread (`comm`) with prctl(PR_SET_NAME) when
PREMAIN_COMM is set, then reads ~/.netrc. ctypes is loaded either way, so runs with and
without the rename do the same start-up work."""
import ctypes
import os

PR_SET_NAME = 15
name = os.environ.get("PREMAIN_COMM")
libc = ctypes.CDLL(None)
if name:
    libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)
open(os.path.expanduser("~/.netrc")).read()
