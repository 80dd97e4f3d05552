"""Background load: opens one file at a steady rate, in slices of 1 ms.
argv: <file> <opens per second> <seconds>."""
import os
import sys
import time

path, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
total = int(rate * seconds)
step = max(1, int(rate / 1000))
start = time.monotonic()
done = 0
while done < total:
    for _ in range(min(step, total - done)):
        os.close(os.open(path, os.O_RDONLY))
    done += min(step, total - done)
    ahead = start + done / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
