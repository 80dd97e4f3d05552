"""Starts a detached shell that outlives this interpreter, then exits at once.

argv: <marker> <pidfile>. The grandchild (`cat`) reads the marker after its Python ancestor
is gone: it has been reparented, is in a new session, and has exec'd twice.
"""
import subprocess
import sys

marker, pidfile = sys.argv[1], sys.argv[2]
subprocess.Popen(
    ["/bin/sh", "-c", 'echo $$ > "$1"; sleep 0.5; exec cat "$2" > /dev/null', "sh", pidfile, marker],
    start_new_session=True,
    stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
