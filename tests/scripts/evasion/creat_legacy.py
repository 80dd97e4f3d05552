"""Creates (or truncates) PATH through the legacy creat(2) syscall (nr 85).

argv: PATH. Writes one line with write(2) and closes with close(2), all raw
syscalls. Prints one JSON line with the fd, the bytes written and their SHA-256.
"""
import ctypes
import hashlib
import json
import os
import sys

TECHNIQUE = "creat_legacy"
NR_WRITE, NR_CLOSE, NR_CREAT = 1, 3, 85
LINE = b"premain evasion test: written via creat(2)\n"

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def syscall(nr, *args):
    # syscall() is variadic: every argument must be widened to a full register.
    ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, "syscall %d: %s" % (nr, os.strerror(err)))
    return ret


def main(argv):
    if len(argv) != 1:
        raise SystemExit("usage: creat_legacy.py PATH")
    path = ctypes.create_string_buffer(os.fsencode(argv[0]))
    fd = syscall(NR_CREAT, ctypes.addressof(path), 0o644)
    buf = ctypes.create_string_buffer(LINE, len(LINE))
    try:
        written = syscall(NR_WRITE, fd, ctypes.addressof(buf), len(LINE))
    finally:
        syscall(NR_CLOSE, fd)
    if written != len(LINE):
        raise OSError("short write: %d of %d bytes" % (written, len(LINE)))
    return {"technique": TECHNIQUE, "ok": True, "syscall": "creat", "nr": NR_CREAT,
            "path": argv[0], "fd": fd, "bytes": written,
            "sha256": hashlib.sha256(LINE).hexdigest()}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
