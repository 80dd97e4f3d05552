"""Keeps generating records until told to stop: opens one file in a loop and now and then
forks a child that opens it once more and exits.

argv: <target> <stop file>. Prints its pid, then runs until the stop file exists.
"""
import os
import sys
import time

target, stop = sys.argv[1], sys.argv[2]
print(os.getpid(), flush=True)
n = 0
while not os.path.exists(stop):
    os.close(os.open(target, os.O_RDONLY))
    n += 1
    if n % 200 == 0:
        child = os.fork()
        if child == 0:
            os.close(os.open(target, os.O_RDONLY))
            os._exit(0)
        os.waitpid(child, 0)
    time.sleep(0.001)
