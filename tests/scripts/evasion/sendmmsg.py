"""Sends two UDP datagrams to 127.0.0.1:PORT with a single sendmmsg(2) call on
an unconnected socket, each message carrying its own destination in msg_name
(no connect, sendto or sendmsg is made). The socket module has no sendmmsg,
so the call goes through ctypes.

argv: PORT. Prints one JSON line with the number of messages sent and the
length of each.
"""
import ctypes
import json
import os
import socket
import struct
import sys

TECHNIQUE = "sendmmsg"
MESSAGES = [b"premain evasion test: sendmmsg 1\n", b"premain evasion test: sendmmsg 2\n"]


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(Iovec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", Msghdr), ("msg_len", ctypes.c_uint)]


libc = ctypes.CDLL(None, use_errno=True)
libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(Mmsghdr), ctypes.c_uint, ctypes.c_int]
libc.sendmmsg.restype = ctypes.c_int


def main(argv):
    if len(argv) != 1:
        raise SystemExit("usage: sendmmsg.py PORT")
    port = int(argv[0])
    sockaddr = struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) + \
        socket.inet_aton("127.0.0.1") + bytes(8)
    # Every buffer must outlive the call: keep references in these lists.
    names = [ctypes.create_string_buffer(sockaddr, len(sockaddr)) for _ in MESSAGES]
    bufs = [ctypes.create_string_buffer(m, len(m)) for m in MESSAGES]
    iovs = [Iovec(ctypes.addressof(b), len(m)) for b, m in zip(bufs, MESSAGES)]
    vec = (Mmsghdr * len(MESSAGES))()
    for i, iov in enumerate(iovs):
        hdr = vec[i].msg_hdr
        hdr.msg_name = ctypes.addressof(names[i])
        hdr.msg_namelen = len(sockaddr)
        hdr.msg_iov = ctypes.pointer(iov)
        hdr.msg_iovlen = 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sent = libc.sendmmsg(sock.fileno(), vec, len(MESSAGES), 0)
        if sent < 0:
            err = ctypes.get_errno()
            raise OSError(err, "sendmmsg: %s" % os.strerror(err))
        fd = sock.fileno()
    if sent != len(MESSAGES):
        raise OSError("sendmmsg sent %d of %d messages" % (sent, len(MESSAGES)))
    return {"technique": TECHNIQUE, "ok": True, "address": "127.0.0.1", "port": port,
            "fd": fd, "messages": sent, "lengths": [vec[i].msg_len for i in range(sent)],
            "bytes": sum(vec[i].msg_len for i in range(sent))}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
