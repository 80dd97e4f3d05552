"""Runs its arguments as a child, as a Python supervisor would, and forwards SIGINT, SIGTERM
and SIGHUP to it; exits with the child's status. The child gets SIGTERM if this dies."""
import ctypes
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent():
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


child = subprocess.Popen(sys.argv[1:], preexec_fn=die_with_parent)
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, lambda s, _frame: child.send_signal(s))
code = child.wait()
sys.exit(code if code >= 0 else 128 - code)
