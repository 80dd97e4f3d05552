"""Writes (or reads) files through the i386 syscall table from this 64-bit
process, with the `int 0x80` stub of ia32_open.py: what a persistence payload
does to stay out of sight of the 64-bit syscall tracepoints.

argv: OP PATH [OP PATH ...], OP one of:
  append  i386 open(PATH, O_WRONLY|O_APPEND) (5), write (4) a tagged line, close (6)
  creat   i386 creat(PATH, 0644) (8), write a tagged systemd unit, close
  read    i386 open(PATH, O_RDONLY), read (3) it all, close
Refuses a PATH under /etc or the real home directory. Prints one JSON line with,
per OP, the path, the flags or call used, the bytes written or read and their
SHA-256 (for append, of the whole file after it).
"""
import ctypes
import hashlib
import json
import os
import pwd
import sys

TECHNIQUE = "ia32_persist"
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_PRIVATE, MAP_32BIT, MAP_ANONYMOUS = 0x02, 0x40, 0x20
PAGE = 4096
# The stub of ia32_open.py: int stub(nr, a1, ..., a6) moves the SysV x86_64
# arguments into eax, ebx, ecx, edx, esi, edi, ebp and runs `int 0x80`.
STUB = bytes.fromhex(
    "53" "55" "89f8" "89f3" "4189d2" "4189cb" "4489c6" "4489cf" "8b6c2418"
    "4489d1" "4489da" "cd80" "5d" "5b" "c3"
)

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def mmap(size, prot, flags):
    addr = libc.mmap(None, size, prot, flags | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        err = ctypes.get_errno()
        raise OSError(err, "mmap: %s" % os.strerror(err))
    return addr


def make_stub():
    code = mmap(PAGE, PROT_READ | PROT_WRITE, 0)
    ctypes.memmove(code, STUB, len(STUB))
    if libc.mprotect(code, PAGE, PROT_READ | PROT_EXEC) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "mprotect: %s" % os.strerror(err))
    proto = ctypes.CFUNCTYPE(ctypes.c_int, *([ctypes.c_uint] * 7))
    return code, proto(code)
TAG = "premain-evasion-test"
I386_READ, I386_WRITE, I386_OPEN, I386_CLOSE, I386_CREAT = 3, 4, 5, 6, 8
BUF_SIZE = 65536
CONTENT = {
    "append": "echo %s >/dev/null  # %s\n" % (TAG, TAG),
    "creat": "[Unit]\nDescription=%s\n\n[Service]\nExecStart=/bin/true\n" % TAG,
}


def guard(path):
    real = os.path.realpath(path)
    homes = {os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir)}
    if real == "/etc" or real.startswith("/etc/"):
        raise PermissionError("refusing to touch a file under /etc: %s" % path)
    if any(real.startswith(h + "/") for h in homes):
        raise PermissionError("refusing to touch the real home directory: %s" % path)


def main(argv):
    if not argv or len(argv) % 2 or any(op not in ("append", "creat", "read") for op in argv[::2]):
        raise SystemExit("usage: ia32_persist.py {append|creat|read} PATH ...")
    code, stub = make_stub()
    low = mmap(PAGE + BUF_SIZE, PROT_READ | PROT_WRITE, MAP_32BIT)
    if low + PAGE + BUF_SIZE > 1 << 32:
        raise OSError("MAP_32BIT mapping at %#x is not below 4 GiB" % low)
    buf = low + PAGE

    def ia32(nr, *args):
        args = list(args) + [0] * (6 - len(args))
        ret = stub(nr, *args)
        if ret < 0:
            raise OSError(-ret, "i386 syscall %d: %s" % (nr, os.strerror(-ret)))
        return ret

    done = []
    try:
        for op, path in zip(argv[::2], argv[1::2]):
            guard(path)
            name = os.fsencode(path)
            if len(name) >= PAGE:
                raise ValueError("path longer than %d bytes" % (PAGE - 1))
            ctypes.memmove(low, name + b"\0", len(name) + 1)
            if op == "read":
                flags = os.O_RDONLY
                fd = ia32(I386_OPEN, low, flags, 0)
                data = bytearray()
                try:
                    while True:
                        n = ia32(I386_READ, fd, buf, BUF_SIZE)
                        if n == 0:
                            break
                        data += ctypes.string_at(buf, n)
                finally:
                    ia32(I386_CLOSE, fd)
                done.append({"op": op, "path": path, "call": "open", "flags": flags,
                             "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
                continue
            text = CONTENT[op].encode()
            if op == "append":
                flags = os.O_WRONLY | os.O_APPEND
                fd = ia32(I386_OPEN, low, flags, 0)
            else:
                flags = os.O_CREAT | os.O_WRONLY | os.O_TRUNC
                fd = ia32(I386_CREAT, low, 0o644)
            try:
                ctypes.memmove(buf, text, len(text))
                if ia32(I386_WRITE, fd, buf, len(text)) != len(text):
                    raise OSError("short write to %s" % path)
            finally:
                ia32(I386_CLOSE, fd)
            with open(path, "rb") as f:
                whole = f.read()
            done.append({"op": op, "path": path, "call": "open" if op == "append" else "creat",
                         "flags": flags, "bytes": len(text), "line": text.decode(),
                         "sha256": hashlib.sha256(whole).hexdigest()})
    finally:
        libc.munmap(low, PAGE + BUF_SIZE)
        libc.munmap(code, PAGE)
    return {"technique": TECHNIQUE, "ok": True, "abi": "i386 int 0x80", "done": done}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
