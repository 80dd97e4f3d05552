"""Runs an interactive bash (job control on) on a new pseudo-terminal, types the lines given
as arguments followed by `exit`, and prints everything the terminal showed.

The shell is started with neither rc file nor profile, so only what the test types runs. A
second `exit` ends it even with stopped jobs (the first only warns); a shell still there after
LIMIT_SECONDS is killed, and the script fails, with what was shown."""

import os
import signal
import pty
import select
import sys
import time

LIMIT_SECONDS = 30

pid, fd = pty.fork()
if pid == 0:
    os.environ["PS1"] = "$ "
    os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])

for line in sys.argv[1:] + ["exit", "exit"]:
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
# The terminal closes as the shell exits: give it a moment to be reaped.
for _ in range(50):
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
if done == 0:
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    shown += b"\n[pty_shell: the shell did not exit; killed]\n"
sys.stdout.write(shown.decode(errors="replace"))
sys.exit(0 if os.waitstatus_to_exitcode(status) == 0 else 1)
