"""Opens one file many times in a tight loop. argv: <path> <count>."""
import os
import sys

path, count = sys.argv[1], int(sys.argv[2])
for _ in range(count):
    os.close(os.open(path, os.O_RDONLY))
