"""Memory workload: forks <count> children that sleep until killed, then prints "ready" and
sleeps too. Forked children of a Python are tracked descendants; they share the parent's
pages, so a thousand of them cost little memory. argv: <count>."""
import os
import signal
import sys

count = int(sys.argv[1])
for _ in range(count):
    if os.fork() == 0:
        signal.pause()
        os._exit(0)
print("ready", flush=True)
signal.pause()
