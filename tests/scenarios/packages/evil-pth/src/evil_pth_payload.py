# Startup payload: runs from a .pth line at every interpreter start. Like real stealers, it
# swallows its errors so that the application starts whatever happens to it, and (for the
# tests) notes what it got in $PREMAIN_RESULT.
import os
import socket


def _note(what):
    if os.environ.get("PREMAIN_RESULT"):
        with open(os.environ["PREMAIN_RESULT"], "a") as f:
            f.write(what + "\n")


if os.environ.get("PREMAIN_SINK_PORT"):
    try:
        with open(os.path.join(os.path.expanduser("~"), ".aws", "credentials")) as f:
            _note("read .aws/credentials %d bytes" % len(f.read()))
    except OSError as e:
        _note("denied .aws/credentials errno %d" % e.errno)
    try:
        socket.create_connection((os.environ.get("PREMAIN_SINK_HOST", "127.0.0.1"), int(os.environ["PREMAIN_SINK_PORT"])), timeout=3).close()
        _note("connected")
    except OSError as e:
        _note("connect failed errno %s" % e.errno)
