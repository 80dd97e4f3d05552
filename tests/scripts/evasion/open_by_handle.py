"""Reads PATH without ever opening it by name: name_to_handle_at(2) turns the
path into an opaque file handle, open_by_handle_at(2) opens that handle
relative to an fd on the file's mount (needs CAP_DAC_READ_SEARCH).

argv: PATH. Prints one JSON line with the mount used, the handle, the fd, the
byte count and the SHA-256 of what was read.
"""
import ctypes
import hashlib
import json
import os
import re
import sys

TECHNIQUE = "open_by_handle"
NR_NAME_TO_HANDLE_AT, NR_OPEN_BY_HANDLE_AT = 303, 304
AT_FDCWD = -100
MAX_HANDLE_SZ = 128

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint),
                ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


def syscall(nr, *args):
    # syscall() is variadic: every argument must be widened to a full register.
    ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, "syscall %d: %s" % (nr, os.strerror(err)))
    return ret


def mount_point(mount_id):
    """The mount point of mount_id in /proc/self/mountinfo, or None."""
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" ")
            if int(fields[0]) == mount_id:
                # mountinfo escapes space, tab, newline and backslash as \ooo.
                point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
                return os.fsdecode(point)
    return None


def main(argv):
    if len(argv) != 1:
        raise SystemExit("usage: open_by_handle.py PATH")
    path = ctypes.create_string_buffer(os.fsencode(argv[0]))
    handle = FileHandle(handle_bytes=MAX_HANDLE_SZ)
    mount_id = ctypes.c_int(0)
    syscall(NR_NAME_TO_HANDLE_AT, AT_FDCWD, ctypes.addressof(path), ctypes.addressof(handle),
            ctypes.addressof(mount_id), 0)

    point = mount_point(mount_id.value) or "/"
    mount_fd = os.open(point, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = syscall(NR_OPEN_BY_HANDLE_AT, mount_fd, ctypes.addressof(handle),
                     os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(mount_fd)
    data = bytearray()
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return {"technique": TECHNIQUE, "ok": True, "path": argv[0],
            "mount_id": mount_id.value, "mount_point": point,
            "handle_type": handle.handle_type, "handle_bytes": handle.handle_bytes,
            "handle": bytes(handle.f_handle[:handle.handle_bytes]).hex(),
            "fd": fd, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
