# Startup payload: starts a detached interpreter that acts once its parent has exited.
import os
import subprocess
import sys

CHILD = """
import os, socket, time
time.sleep(1.5)
open(os.path.join(os.path.expanduser("~"), ".ssh", "id_ed25519")).close()
socket.create_connection((os.environ.get("PREMAIN_SINK_HOST", "127.0.0.1"), int(os.environ["PREMAIN_SINK_PORT"])), timeout=3).close()
open(os.environ["PREMAIN_DONE"], "w").close()
"""

if os.environ.get("PREMAIN_SINK_PORT") and not os.environ.get("PREMAIN_DETACHED"):
    env = dict(os.environ, PREMAIN_DETACHED="1")
    subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=env,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
