"""Reads PATH through the legacy x86_64 open(2) syscall (nr 2), not openat.

argv: PATH. read(2) and close(2) are raw syscalls too. Prints one JSON line
with the fd, the byte count and the SHA-256 of what was read.
"""
import ctypes
import hashlib
import json
import os
import sys

TECHNIQUE = "open_legacy"
NR_READ, NR_OPEN, NR_CLOSE = 0, 2, 3

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
        raise SystemExit("usage: open_legacy.py PATH")
    path = ctypes.create_string_buffer(os.fsencode(argv[0]))
    fd = syscall(NR_OPEN, ctypes.addressof(path), os.O_RDONLY | os.O_CLOEXEC, 0)
    buf = ctypes.create_string_buffer(65536)
    data = bytearray()
    try:
        while True:
            n = syscall(NR_READ, fd, ctypes.addressof(buf), len(buf))
            if n == 0:
                break
            data += buf.raw[:n]
    finally:
        syscall(NR_CLOSE, fd)
    return {"technique": TECHNIQUE, "ok": True, "syscall": "open", "nr": NR_OPEN,
            "path": argv[0], "fd": fd, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
