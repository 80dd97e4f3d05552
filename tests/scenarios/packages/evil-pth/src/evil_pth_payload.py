# Startup payload: runs from a .pth line at every interpreter start.
import os
import socket

if os.environ.get("PREMAIN_SINK_PORT"):
    open(os.path.join(os.path.expanduser("~"), ".aws", "credentials")).close()
    s = socket.create_connection(("127.0.0.1", int(os.environ["PREMAIN_SINK_PORT"])), timeout=3)
    s.close()
