"""Reads PATH through the i386 syscall table from this 64-bit process: a small
machine-code stub executes `int 0x80` for open (5), read (3) and close (6), so
the kernel sees compat syscalls that 64-bit syscall tracepoint filters miss.

argv: PATH. `int 0x80` truncates every argument to 32 bits, so the path and
the read buffer live in a MAP_32BIT mapping. Prints one JSON line with the fd,
the byte count and the SHA-256 of what was read.
"""
import ctypes
import hashlib
import json
import os
import sys

TECHNIQUE = "ia32_open"
I386_READ, I386_OPEN, I386_CLOSE = 3, 5, 6
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_PRIVATE, MAP_32BIT, MAP_ANONYMOUS = 0x02, 0x40, 0x20
PAGE = 4096
BUF_SIZE = 65536

# int stub(nr, a1, a2, a3, a4, a5, a6): the SysV x86_64 arguments (rdi, rsi,
# rdx, rcx, r8, r9, stack) moved into the i386 syscall registers (eax, ebx,
# ecx, edx, esi, edi, ebp), then `int 0x80`; eax is the result.
STUB = bytes.fromhex(
    "53"          # push rbx
    "55"          # push rbp
    "89f8"        # mov eax, edi
    "89f3"        # mov ebx, esi
    "4189d2"      # mov r10d, edx
    "4189cb"      # mov r11d, ecx
    "4489c6"      # mov esi, r8d
    "4489cf"      # mov edi, r9d
    "8b6c2418"    # mov ebp, [rsp+0x18]
    "4489d1"      # mov ecx, r10d
    "4489da"      # mov edx, r11d
    "cd80"        # int 0x80
    "5d"          # pop rbp
    "5b"          # pop rbx
    "c3"          # ret
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


def main(argv):
    if len(argv) != 1:
        raise SystemExit("usage: ia32_open.py PATH")
    path = os.fsencode(argv[0])
    if len(path) >= PAGE:
        raise ValueError("path longer than %d bytes" % (PAGE - 1))
    code, stub = make_stub()
    low = mmap(PAGE + BUF_SIZE, PROT_READ | PROT_WRITE, MAP_32BIT)
    if low + PAGE + BUF_SIZE > 1 << 32:
        raise OSError("MAP_32BIT mapping at %#x is not below 4 GiB" % low)

    def ia32(nr, *args):
        args = list(args) + [0] * (6 - len(args))
        ret = stub(nr, *args)
        if ret < 0:
            raise OSError(-ret, "i386 syscall %d: %s" % (nr, os.strerror(-ret)))
        return ret

    try:
        ctypes.memmove(low, path + b"\0", len(path) + 1)
        buf = low + PAGE
        fd = ia32(I386_OPEN, low, os.O_RDONLY, 0)
        data = bytearray()
        try:
            while True:
                n = ia32(I386_READ, fd, buf, BUF_SIZE)
                if n == 0:
                    break
                data += ctypes.string_at(buf, n)
        finally:
            ia32(I386_CLOSE, fd)
    finally:
        libc.munmap(low, PAGE + BUF_SIZE)
        libc.munmap(code, PAGE)
    return {"technique": TECHNIQUE, "ok": True, "abi": "i386 int 0x80",
            "syscalls": {"open": I386_OPEN, "read": I386_READ, "close": I386_CLOSE},
            "path": argv[0], "low_buffer": "%#x" % low, "fd": fd, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
