# Imported lazily at runtime; its body only defines functions.
import os
import socket


def phone_home(port):
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
    return os.getpid()
