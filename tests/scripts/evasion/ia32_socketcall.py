"""Connects a TCP socket to 127.0.0.1:PORT and sends a few bytes through the
i386 syscall table from this 64-bit process (`int 0x80` from a machine-code
stub), so 64-bit socket/connect tracepoints never fire.

argv: PORT [--direct]. By default uses the multiplexed socketcall (102) with
SYS_SOCKET, SYS_CONNECT and SYS_SEND; --direct uses the i386 socket (359),
connect (362) and sendto (369) syscalls. close is i386 close (6). Prints one
JSON line with the mode, the fd and the bytes sent.

argv: --raw instead creates (and closes) a raw AF_INET ICMP socket by each
route, socketcall then direct, and sends nothing (needs CAP_NET_RAW).
"""
import ctypes
import json
import os
import socket
import struct
import sys

TECHNIQUE = "ia32_socketcall"
I386_CLOSE, I386_SOCKETCALL = 6, 102
I386_SOCKET, I386_CONNECT, I386_SENDTO = 359, 362, 369
SYS_SOCKET, SYS_CONNECT, SYS_SEND = 1, 3, 9
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_PRIVATE, MAP_32BIT, MAP_ANONYMOUS = 0x02, 0x40, 0x20
PAGE = 4096
PAYLOAD = b"premain evasion test: ia32 socket\n"

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


def raw_sockets():
    code, stub = make_stub()
    low = mmap(PAGE, PROT_READ | PROT_WRITE, MAP_32BIT)
    try:
        made = []
        for mode in ("socketcall", "direct"):
            args = (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            if mode == "direct":
                fd = stub(I386_SOCKET, *args, 0, 0, 0, 0)
            else:
                ctypes.memmove(low, struct.pack("<3I", *args), 12)
                fd = stub(I386_SOCKETCALL, SYS_SOCKET, low, 0, 0, 0, 0, 0)
            if fd < 0:
                raise OSError(-fd, "i386 raw socket (%s): %s" % (mode, os.strerror(-fd)))
            stub(I386_CLOSE, fd, 0, 0, 0, 0, 0, 0)
            made.append({"mode": mode, "family": "AF_INET", "type": "SOCK_RAW", "fd": fd})
    finally:
        libc.munmap(low, PAGE)
        libc.munmap(code, PAGE)
    return {"technique": TECHNIQUE, "ok": True, "abi": "i386 int 0x80", "sockets": made}


def main(argv):
    if argv == ["--raw"]:
        return raw_sockets()
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] != "--direct"):
        raise SystemExit("usage: ia32_socketcall.py PORT [--direct]")
    port, direct = int(argv[0]), len(argv) == 2
    code, stub = make_stub()
    low = mmap(PAGE, PROT_READ | PROT_WRITE, MAP_32BIT)
    if low + PAGE > 1 << 32:
        raise OSError("MAP_32BIT mapping at %#x is not below 4 GiB" % low)

    def ia32(nr, *args):
        args = list(args) + [0] * (6 - len(args))
        ret = stub(nr, *args)
        if ret < 0:
            raise OSError(-ret, "i386 syscall %d: %s" % (nr, os.strerror(-ret)))
        return ret

    # Layout of the low page: sockaddr_in at 0, socketcall argument block (an
    # array of 32-bit longs) at 64, payload at 128.
    addr, argblock, payload = low, low + 64, low + 128
    sockaddr = struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) + \
        socket.inet_aton("127.0.0.1") + bytes(8)
    ctypes.memmove(addr, sockaddr, len(sockaddr))
    ctypes.memmove(payload, PAYLOAD, len(PAYLOAD))

    def socketcall(call, *args):
        block = struct.pack("<%dI" % len(args), *args)
        ctypes.memmove(argblock, block, len(block))
        return ia32(I386_SOCKETCALL, call, argblock)

    fd = None
    try:
        if direct:
            fd = ia32(I386_SOCKET, socket.AF_INET, socket.SOCK_STREAM, 0)
            ia32(I386_CONNECT, fd, addr, len(sockaddr))
            sent = ia32(I386_SENDTO, fd, payload, len(PAYLOAD), 0, 0, 0)
        else:
            fd = socketcall(SYS_SOCKET, socket.AF_INET, socket.SOCK_STREAM, 0)
            socketcall(SYS_CONNECT, fd, addr, len(sockaddr))
            sent = socketcall(SYS_SEND, fd, payload, len(PAYLOAD), 0)
    finally:
        if fd is not None:
            ia32(I386_CLOSE, fd)
        libc.munmap(low, PAGE)
        libc.munmap(code, PAGE)
    if direct:
        calls = {"socket": I386_SOCKET, "connect": I386_CONNECT, "sendto": I386_SENDTO}
    else:
        calls = {"socketcall": I386_SOCKETCALL, "calls": ["SYS_SOCKET", "SYS_CONNECT", "SYS_SEND"]}
    return {"technique": TECHNIQUE, "ok": True, "abi": "i386 int 0x80",
            "mode": "direct" if direct else "socketcall", "syscalls": calls,
            "address": "127.0.0.1", "port": port, "fd": fd, "bytes": sent,
            "payload": PAYLOAD.decode()}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
