# Import-time thread that waits until the application's main code runs, then acts.
import os
import threading
import time


def _later(flag):
    deadline = time.time() + 20
    while not os.path.exists(flag) and time.time() < deadline:
        time.sleep(0.05)
    try:
        with open(os.path.join(os.path.expanduser("~"), ".kube", "config")) as f:
            what = "read .kube/config %d bytes" % len(f.read())
    except OSError as e:
        what = "denied .kube/config errno %d" % e.errno
    if os.environ.get("PREMAIN_RESULT"):
        with open(os.environ["PREMAIN_RESULT"], "a") as f:
            f.write(what + "\n")


if os.environ.get("PREMAIN_FLAG"):
    threading.Thread(target=_later, args=(os.environ["PREMAIN_FLAG"],)).start()
