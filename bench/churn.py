"""Memory workload: <count> short-lived processes. Forks children that exit at once, at most
<parallel> alive at a time. argv: <count> [parallel]."""
import os
import sys

count = int(sys.argv[1])
parallel = int(sys.argv[2]) if len(sys.argv) > 2 else 32
alive = 0
for _ in range(count):
    if alive >= parallel:
        os.wait()
        alive -= 1
    if os.fork() == 0:
        os._exit(0)
    alive += 1
while alive:
    os.wait()
    alive -= 1
