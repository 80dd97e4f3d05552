"""Reads LEN bytes at ADDR from another process with process_vm_readv(2): no
ptrace attach and no /proc/PID/mem open, just one syscall.

argv: PID ADDR LEN (ADDR decimal or 0x-hex). Prints one JSON line with the
bytes read, their SHA-256 and (up to 4 KiB) their text.

argv: --serve MARKER. Victim mode for this script and proc_mem.py: keeps
MARKER in a ctypes buffer, prints one JSON line with its pid, the buffer's
address and length, then waits until stdin is closed and exits 0.
"""
import ctypes
import hashlib
import json
import os
import sys

TECHNIQUE = "process_vm_readv"


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


libc = ctypes.CDLL(None, use_errno=True)
libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(Iovec), ctypes.c_ulong,
                                  ctypes.POINTER(Iovec), ctypes.c_ulong, ctypes.c_ulong]
libc.process_vm_readv.restype = ctypes.c_ssize_t


def serve(marker):
    buf = ctypes.create_string_buffer(os.fsencode(marker))
    print(json.dumps({"technique": TECHNIQUE, "ok": True, "mode": "serve", "pid": os.getpid(),
                      "addr": ctypes.addressof(buf), "addr_hex": "%#x" % ctypes.addressof(buf),
                      "len": len(buf.value)}), flush=True)
    sys.stdin.buffer.read()
    return None


def main(argv):
    if len(argv) == 2 and argv[0] == "--serve":
        return serve(argv[1])
    if len(argv) != 3:
        raise SystemExit("usage: process_vm_readv.py PID ADDR LEN | --serve MARKER")
    pid, addr, length = int(argv[0]), int(argv[1], 0), int(argv[2])
    buf = ctypes.create_string_buffer(length)
    local = Iovec(ctypes.addressof(buf), length)
    remote = Iovec(addr, length)
    n = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if n < 0:
        err = ctypes.get_errno()
        raise OSError(err, "process_vm_readv: %s" % os.strerror(err))
    data = buf.raw[:n]
    result = {"technique": TECHNIQUE, "ok": True, "mode": "read", "pid": pid,
              "addr": addr, "bytes": n, "sha256": hashlib.sha256(data).hexdigest()}
    if n <= 4096:
        result["text"] = data.decode("utf-8", "replace")
    return result


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    if result is not None:
        print(json.dumps(result))
