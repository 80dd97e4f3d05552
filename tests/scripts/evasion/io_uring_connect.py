"""Connects a TCP socket to 127.0.0.1:PORT and sends a few bytes through
io_uring only: IORING_OP_SOCKET, then IORING_OP_CONNECT linked (IOSQE_IO_LINK)
to IORING_OP_SEND, then IORING_OP_CLOSE, so no socket/connect/sendto/close
syscall is made for it.

argv: PORT. Kernels older than 5.19 lack IORING_OP_SOCKET; there the socket
comes from socket(2) and "socket_via" says so. Prints one JSON line with the
fd, the bytes sent and how the socket was made.
"""
import ctypes
import json
import os
import socket
import struct
import sys

TECHNIQUE = "io_uring_connect"
NR_IO_URING_SETUP, NR_IO_URING_ENTER = 425, 426
IORING_OP_CONNECT, IORING_OP_CLOSE, IORING_OP_SEND, IORING_OP_SOCKET = 16, 19, 26, 45
IOSQE_IO_LINK = 1 << 2
IORING_ENTER_GETEVENTS = 1 << 0
IORING_FEAT_SINGLE_MMAP = 1 << 0
IORING_OFF_SQ_RING, IORING_OFF_CQ_RING, IORING_OFF_SQES = 0, 0x8000000, 0x10000000
PROT_READ, PROT_WRITE = 1, 2
MAP_SHARED, MAP_POPULATE = 0x01, 0x8000
PAYLOAD = b"premain evasion test: io_uring connect\n"

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64
s32 = ctypes.c_int32


class SqOffsets(ctypes.Structure):
    _fields_ = [("head", u32), ("tail", u32), ("ring_mask", u32), ("ring_entries", u32),
                ("flags", u32), ("dropped", u32), ("array", u32), ("resv1", u32),
                ("user_addr", u64)]


class CqOffsets(ctypes.Structure):
    _fields_ = [("head", u32), ("tail", u32), ("ring_mask", u32), ("ring_entries", u32),
                ("overflow", u32), ("cqes", u32), ("flags", u32), ("resv1", u32),
                ("user_addr", u64)]


class Params(ctypes.Structure):
    _fields_ = [("sq_entries", u32), ("cq_entries", u32), ("flags", u32),
                ("sq_thread_cpu", u32), ("sq_thread_idle", u32), ("features", u32),
                ("wq_fd", u32), ("resv", u32 * 3), ("sq_off", SqOffsets), ("cq_off", CqOffsets)]


class Sqe(ctypes.Structure):
    # struct io_uring_sqe with its unions flattened to the members used here.
    _fields_ = [("opcode", u8), ("flags", u8), ("ioprio", u16), ("fd", s32),
                ("off", u64), ("addr", u64), ("len", u32), ("op_flags", u32),
                ("user_data", u64), ("buf_index", u16), ("personality", u16),
                ("file_index", u32), ("addr3", u64), ("pad2", u64)]


class Cqe(ctypes.Structure):
    _fields_ = [("user_data", u64), ("res", s32), ("flags", u32)]


def syscall(nr, *args):
    # syscall() is variadic: every argument must be widened to a full register.
    ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, "syscall %d: %s" % (nr, os.strerror(err)))
    return ret


class Ring:
    """A minimal io_uring: submit a batch of SQEs, wait for all their CQEs."""

    def __init__(self, entries=8):
        self.params = p = Params()
        self.fd = syscall(NR_IO_URING_SETUP, entries, ctypes.addressof(p))
        self.maps = []
        sq_size = p.sq_off.array + p.sq_entries * 4
        cq_size = p.cq_off.cqes + p.cq_entries * ctypes.sizeof(Cqe)
        if p.features & IORING_FEAT_SINGLE_MMAP:
            self.sq = self.cq = self._mmap(max(sq_size, cq_size), IORING_OFF_SQ_RING)
        else:
            self.sq = self._mmap(sq_size, IORING_OFF_SQ_RING)
            self.cq = self._mmap(cq_size, IORING_OFF_CQ_RING)
        self.sqes = self._mmap(p.sq_entries * ctypes.sizeof(Sqe), IORING_OFF_SQES)
        self.next_user_data = 1

    def _mmap(self, size, offset):
        addr = libc.mmap(None, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                         self.fd, offset)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            err = ctypes.get_errno()
            raise OSError(err, "mmap ring: %s" % os.strerror(err))
        self.maps.append((addr, size))
        return addr

    def _u32(self, base, offset):
        return u32.from_address(base + offset)

    def run(self, sqes):
        """Submits sqes in order and returns their CQE results, in the same order."""
        so, co = self.params.sq_off, self.params.cq_off
        tail = self._u32(self.sq, so.tail)
        mask = self._u32(self.sq, so.ring_mask).value
        pos = tail.value
        wanted = []
        for sqe in sqes:
            sqe.user_data = self.next_user_data
            wanted.append(self.next_user_data)
            self.next_user_data += 1
            idx = pos & mask
            ctypes.memmove(self.sqes + idx * ctypes.sizeof(Sqe), ctypes.addressof(sqe),
                           ctypes.sizeof(Sqe))
            self._u32(self.sq, so.array + idx * 4).value = idx
            pos = (pos + 1) & 0xFFFFFFFF
        # x86 keeps stores in order and io_uring_enter is a full barrier, so
        # publishing the tail after the SQEs needs no explicit fence here.
        tail.value = pos
        submitted = syscall(NR_IO_URING_ENTER, self.fd, len(sqes), len(sqes),
                            IORING_ENTER_GETEVENTS, 0, 0)
        if submitted != len(sqes):
            raise OSError("io_uring_enter submitted %d of %d SQEs" % (submitted, len(sqes)))
        results = {}
        head = self._u32(self.cq, co.head)
        cq_tail = self._u32(self.cq, co.tail)
        cq_mask = self._u32(self.cq, co.ring_mask).value
        while len(results) < len(sqes):
            if head.value == cq_tail.value:
                syscall(NR_IO_URING_ENTER, self.fd, 0, 1, IORING_ENTER_GETEVENTS, 0, 0)
                continue
            cqe = Cqe.from_address(self.cq + co.cqes + (head.value & cq_mask) * ctypes.sizeof(Cqe))
            results[cqe.user_data] = cqe.res
            head.value = (head.value + 1) & 0xFFFFFFFF
        return [results[u] for u in wanted]

    def close(self):
        for addr, size in self.maps:
            libc.munmap(addr, size)
        os.close(self.fd)


def check(res, what):
    if res < 0:
        raise OSError(-res, "%s: %s" % (what, os.strerror(-res)))
    return res


def main(argv):
    if len(argv) != 1:
        raise SystemExit("usage: io_uring_connect.py PORT")
    port = int(argv[0])
    sockaddr = struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) + \
        socket.inet_aton("127.0.0.1") + bytes(8)
    addr = ctypes.create_string_buffer(sockaddr, len(sockaddr))
    payload = ctypes.create_string_buffer(PAYLOAD, len(PAYLOAD))

    ring = Ring()
    try:
        fd = ring.run([Sqe(opcode=IORING_OP_SOCKET, fd=socket.AF_INET, off=socket.SOCK_STREAM,
                           len=0)])[0]
        socket_via = "IORING_OP_SOCKET"
        if fd in (-22, -95):  # EINVAL / EOPNOTSUPP: opcode unknown to this kernel
            fd = socket.socket(socket.AF_INET, socket.SOCK_STREAM).detach()
            socket_via = "socket()"
        check(fd, "IORING_OP_SOCKET")
        try:
            connected, sent = ring.run([
                Sqe(opcode=IORING_OP_CONNECT, fd=fd, addr=ctypes.addressof(addr),
                    off=len(sockaddr), flags=IOSQE_IO_LINK),
                Sqe(opcode=IORING_OP_SEND, fd=fd, addr=ctypes.addressof(payload),
                    len=len(PAYLOAD))])
            check(connected, "IORING_OP_CONNECT")
            check(sent, "IORING_OP_SEND")
        finally:
            check(ring.run([Sqe(opcode=IORING_OP_CLOSE, fd=fd)])[0], "IORING_OP_CLOSE")
    finally:
        ring.close()
    ops = ["IORING_OP_CONNECT", "IORING_OP_SEND", "IORING_OP_CLOSE"]
    if socket_via == "IORING_OP_SOCKET":
        ops.insert(0, socket_via)
    return {"technique": TECHNIQUE, "ok": True, "socket_via": socket_via,
            "ops": ops,
            "address": "127.0.0.1", "port": port, "fd": fd, "bytes": sent,
            "payload": PAYLOAD.decode()}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
