"""Runs an interactive bash (job control on) on a new pseudo-terminal, types the lines given
as arguments followed by `exit`, and prints everything the terminal showed.

The shell is started with neither rc file nor profile, so only what the test types runs."""

import os
import pty
import select
import sys
import time

LIMIT_SECONDS = 60

pid, fd = pty.fork()
if pid == 0:
    os.environ["PS1"] = "$ "
    os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])

for line in sys.argv[1:] + ["exit"]:
    os.write(fd, line.encode() + b"\n")

shown = b""
deadline = time.monotonic() + LIMIT_SECONDS
while time.monotonic() < deadline:
    ready, _, _ = select.select([fd], [], [], 1.0)
    if not ready:
        continue
    try:
        chunk = os.read(fd, 4096)
    except OSError:  # EIO: the shell exited and the terminal closed.
        break
    if not chunk:
        break
    shown += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode(errors="replace"))
sys.exit(0 if os.waitstatus_to_exitcode(status) == 0 else 1)
