"""Gives a file a new name through io_uring only: IORING_OP_RENAMEAT,
IORING_OP_LINKAT or IORING_OP_SYMLINKAT, so no rename/link/symlink syscall
ever names TARGET.

argv: OP SRCDIR TARGET ANCHOR [--sqpoll]. OP is rename, link or symlink. SRCDIR/.uring-OP.tmp
is written first with plain open/write (a name no rule knows), then:
  rename   RENAMEAT it to TARGET (its inode moves)
  link     LINKAT it to TARGET (the inode gets a second name)
  symlink  SYMLINKAT TARGET -> it (TARGET is a symbolic link to the file)
ANCHOR says how TARGET is named in the request: abs (absolute, AT_FDCWD),
cwd (chdir to TARGET's directory, its base name with AT_FDCWD) or dirfd
(its base name relative to an O_PATH fd of its directory as the new dirfd).
With --sqpoll the ring is set up with IORING_SETUP_SQPOLL: the request is
submitted by the ring's kernel thread (iou-sqp-PID), not by io_uring_enter.
TARGET's directory is created first; an existing TARGET is replaced (rename,
symlink) or refused (link: EEXIST). Refuses TARGET under /etc or the real home.
Prints one JSON line with the op, source, target, the new name as passed and
the dirfd, the content's bytes and SHA-256, and the source's inode.
"""
import ctypes
import hashlib
import json
import os
import pwd
import sys

TECHNIQUE = "io_uring_rename"
TAG = "premain-evasion-test"
NR_IO_URING_SETUP, NR_IO_URING_ENTER = 425, 426
IORING_OP_RENAMEAT, IORING_OP_SYMLINKAT, IORING_OP_LINKAT = 35, 38, 39
OPCODES = {"rename": IORING_OP_RENAMEAT, "link": IORING_OP_LINKAT, "symlink": IORING_OP_SYMLINKAT}
IORING_ENTER_GETEVENTS, IORING_ENTER_SQ_WAKEUP = 1 << 0, 1 << 1
IORING_SETUP_SQPOLL = 1 << 1
IORING_FEAT_SINGLE_MMAP = 1 << 0
IORING_OFF_SQ_RING, IORING_OFF_CQ_RING, IORING_OFF_SQES = 0, 0x8000000, 0x10000000
AT_FDCWD = -100
O_PATH = 0o10000000
PROT_READ, PROT_WRITE = 1, 2
MAP_SHARED, MAP_POPULATE = 0x01, 0x8000

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
    # struct io_uring_sqe with its unions flattened to the members used here: for
    # RENAMEAT/LINKAT fd is the old dirfd, len the new dirfd, addr the old name, addr2
    # the new name, op_flags the rename/link flags; for SYMLINKAT fd is the new dirfd,
    # addr the link's target, addr2 the new name.
    _fields_ = [("opcode", u8), ("flags", u8), ("ioprio", u16), ("fd", s32),
                ("addr2", u64), ("addr", u64), ("len", u32), ("op_flags", u32),
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
    """A minimal io_uring: submit one SQE, wait for its CQE."""

    def __init__(self, entries=4, sqpoll=False):
        self.params = p = Params(flags=IORING_SETUP_SQPOLL if sqpoll else 0, sq_thread_idle=1000)
        self.sqpoll = sqpoll
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

    def run(self, sqe):
        """Submits sqe and returns its CQE result."""
        so, co = self.params.sq_off, self.params.cq_off
        tail = self._u32(self.sq, so.tail)
        idx = tail.value & self._u32(self.sq, so.ring_mask).value
        sqe.user_data = 1
        ctypes.memmove(self.sqes + idx * ctypes.sizeof(Sqe), ctypes.addressof(sqe),
                       ctypes.sizeof(Sqe))
        self._u32(self.sq, so.array + idx * 4).value = idx
        # x86 keeps stores in order and io_uring_enter is a full barrier.
        tail.value = (tail.value + 1) & 0xFFFFFFFF
        # Under SQPOLL the kernel thread submits; the call only wakes it and waits.
        wake = IORING_ENTER_SQ_WAKEUP if self.sqpoll else 0
        submitted = syscall(NR_IO_URING_ENTER, self.fd, 1, 1, IORING_ENTER_GETEVENTS | wake, 0, 0)
        if submitted != 1:
            raise OSError("io_uring_enter submitted %d of 1 SQE" % submitted)
        head = self._u32(self.cq, co.head)
        while head.value == self._u32(self.cq, co.tail).value:
            syscall(NR_IO_URING_ENTER, self.fd, 0, 1, IORING_ENTER_GETEVENTS, 0, 0)
        mask = self._u32(self.cq, co.ring_mask).value
        cqe = Cqe.from_address(self.cq + co.cqes + (head.value & mask) * ctypes.sizeof(Cqe))
        res = cqe.res
        head.value = (head.value + 1) & 0xFFFFFFFF
        return res

    def close(self):
        for addr, size in self.maps:
            libc.munmap(addr, size)
        os.close(self.fd)


def guard(path):
    real = os.path.realpath(path)
    homes = {os.path.realpath(os.path.expanduser("~")),
             os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir)}
    if real == "/etc" or real.startswith("/etc/"):
        raise PermissionError("refusing to write under /etc: %s" % path)
    for home in homes:
        if real == home or real.startswith(home.rstrip("/") + "/"):
            raise PermissionError("refusing to write in the real home directory: %s" % path)


def main(argv):
    sqpoll = argv[4:] == ["--sqpoll"]
    if len(argv) - sqpoll != 4 or argv[0] not in OPCODES or argv[3] not in ("abs", "cwd", "dirfd"):
        raise SystemExit("usage: io_uring_rename.py {rename|link|symlink} SRCDIR TARGET "
                         "{abs|cwd|dirfd} [--sqpoll]")
    op, srcdir, target, anchor = argv[0], os.path.abspath(argv[1]), os.path.abspath(argv[2]), argv[3]
    guard(srcdir)
    guard(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    source = os.path.join(srcdir, ".uring-%s.tmp" % op)
    text = "# %s %s\n" % (TAG, os.urandom(8).hex())
    with open(source, "w") as f:
        f.write(text)
    ino = os.stat(source).st_ino
    if op != "link" and os.path.lexists(target):
        os.unlink(target)

    dirfd = AT_FDCWD
    if anchor == "abs":
        new = target
    elif anchor == "cwd":
        os.chdir(parent)
        new = os.path.basename(target)
    else:
        dirfd = os.open(parent, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        new = os.path.basename(target)
    old_buf = ctypes.create_string_buffer(os.fsencode(source))
    new_buf = ctypes.create_string_buffer(os.fsencode(new))
    if op == "symlink":
        sqe = Sqe(opcode=IORING_OP_SYMLINKAT, fd=dirfd, addr=ctypes.addressof(old_buf),
                  addr2=ctypes.addressof(new_buf))
    else:
        sqe = Sqe(opcode=OPCODES[op], fd=AT_FDCWD, len=dirfd & 0xFFFFFFFF,
                  addr=ctypes.addressof(old_buf), addr2=ctypes.addressof(new_buf))
    ring = Ring(sqpoll=sqpoll)
    try:
        res = ring.run(sqe)
    finally:
        ring.close()
        if dirfd != AT_FDCWD:
            os.close(dirfd)
    if res < 0:
        raise OSError(-res, "IORING_OP_%sAT: %s" % (op.upper(), os.strerror(-res)))
    data = text.encode()
    return {"technique": TECHNIQUE, "ok": True, "op": op, "opcode": OPCODES[op],
            "source": source, "target": target, "anchor": anchor, "new": new,
            "dirfd": dirfd, "sqpoll": sqpoll, "ino": ino, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
