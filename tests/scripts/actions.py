"""Performs each action premain must report, then prints what it did as JSON.

argv: <dir> <ipv4 port> <ipv6 port>. Runs on every CPython 3.8+.
"""
import json
import os
import socket
import subprocess
import sys

directory, port4, port6 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

with open(os.path.join(directory, "abs-marker")) as f:
    f.read()

os.chdir(directory)
with open("rel-marker") as f:
    f.read()

dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
os.close(os.open("dirfd-marker", os.O_RDONLY, dir_fd=dirfd))
os.close(dirfd)

try:
    open(os.path.join(directory, "missing-marker"))
except FileNotFoundError:
    pass

for family, host, port in ((socket.AF_INET, "127.0.0.1", port4), (socket.AF_INET6, "::1", port6)):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.connect((host, port))
    s.close()

child = subprocess.Popen(["/bin/true"])
child.wait()

print(json.dumps({"pid": os.getpid(), "child": child.pid}))
