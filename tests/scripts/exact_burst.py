"""Generates an exact number of records on command, for loss accounting.

argv: <target> <count> <udp port> <sentinel udp port>. Prints "ready", then waits for a line
on stdin. Then does `count` opens of <target> and `count` UDP sendto's to 127.0.0.1:<port>,
and prints "done". After that each line "s" makes one sentinel round (one open of
<target>.sentinel and one sendto to 127.0.0.1:<sentinel port>, then "sentinel" is printed),
and any other line ends it. Nothing else it does opens a file or sends to an address.
"""
import os
import socket
import sys

target, count = sys.argv[1], int(sys.argv[2])
port, sentinel_port = int(sys.argv[3]), int(sys.argv[4])
sentinel = target + ".sentinel"
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dest = ("127.0.0.1", port)
out = sys.stdout
out.write("ready\n")
out.flush()
sys.stdin.readline()
for _ in range(count):
    os.close(os.open(target, os.O_RDONLY))
for _ in range(count):
    sock.sendto(b"x", dest)
out.write("done\n")
out.flush()
while sys.stdin.readline().strip() == "s":
    os.close(os.open(sentinel, os.O_RDONLY))
    sock.sendto(b"s", ("127.0.0.1", sentinel_port))
    out.write("sentinel\n")
    out.flush()
