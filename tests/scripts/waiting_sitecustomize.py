"""A sitecustomize that stays in start-up until told to go, then does what pre-main malware
does: reads ~/.netrc (twice), connects to a loopback port and runs a program.

Copied as `sitecustomize.py` into a PYTHONPATH directory. Environment:
PREMAIN_WAITING (created once waiting), PREMAIN_GO (waits for it), PREMAIN_PORT.
"""
import os
import socket
import subprocess
import time

with open(os.environ["PREMAIN_WAITING"], "w") as f:
    f.write(str(os.getpid()))
while not os.path.exists(os.environ["PREMAIN_GO"]):
    time.sleep(0.02)
for _ in range(2):
    open(os.path.expanduser("~/.netrc")).close()
s = socket.create_connection(("127.0.0.1", int(os.environ["PREMAIN_PORT"])))
s.close()
subprocess.run(["/bin/true"], check=True)
