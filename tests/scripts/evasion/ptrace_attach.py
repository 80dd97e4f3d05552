"""Attaches to another process with ptrace(2) through ctypes, waits for it to
stop, then detaches and lets it run on.

argv: PID [--seize]. By default PTRACE_ATTACH (the tracee gets SIGSTOP);
--seize uses PTRACE_SEIZE then PTRACE_INTERRUPT (no signal sent). Prints one
JSON line with the request used and the stop observed.
"""
import ctypes
import json
import os
import signal
import sys

TECHNIQUE = "ptrace_attach"
PTRACE_CONT, PTRACE_ATTACH, PTRACE_DETACH = 7, 16, 17
PTRACE_SEIZE, PTRACE_INTERRUPT = 0x4206, 0x4207
PTRACE_EVENT_STOP = 128
WALL = 0x40000000  # __WALL: also wait for a tracee that is not our child

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long


def ptrace(request, pid, addr=0, data=0):
    # ptrace() is variadic in glibc: widen every argument to a full register.
    ret = libc.ptrace(ctypes.c_long(request), ctypes.c_long(pid), ctypes.c_long(addr),
                      ctypes.c_long(data))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, "ptrace(%#x, %d): %s" % (request, pid, os.strerror(err)))
    return ret


def wait_stop(pid, seize):
    """Waits for the attach stop, passing any other signal back to the tracee."""
    while True:
        _, status = os.waitpid(pid, WALL)
        if not os.WIFSTOPPED(status):
            raise OSError("process %d ended while being attached (status %#x)" % (pid, status))
        sig = os.WSTOPSIG(status)
        if seize and status >> 16 == PTRACE_EVENT_STOP:
            return sig
        if not seize and sig == signal.SIGSTOP:
            return sig
        ptrace(PTRACE_CONT, pid, 0, sig)


def main(argv):
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] != "--seize"):
        raise SystemExit("usage: ptrace_attach.py PID [--seize]")
    pid, seize = int(argv[0]), len(argv) == 2
    if seize:
        ptrace(PTRACE_SEIZE, pid)
        ptrace(PTRACE_INTERRUPT, pid)
    else:
        ptrace(PTRACE_ATTACH, pid)
    try:
        sig = wait_stop(pid, seize)
    finally:
        ptrace(PTRACE_DETACH, pid)
    return {"technique": TECHNIQUE, "ok": True, "pid": pid,
            "request": "PTRACE_SEIZE+PTRACE_INTERRUPT" if seize else "PTRACE_ATTACH",
            "stop_signal": signal.Signals(sig).name, "detached": True}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
