"""Capacity workload: pre-main records in bulk. site imports this module at start-up (it is on
PYTHONPATH), so everything here happens before the main code runs.

Env: BENCH_OPENS (how many records to make), BENCH_MARKER (the file to open) or BENCH_UDP_PORT
(send that many datagrams to 127.0.0.1:port instead), BENCH_RATE (records per second for this
process, paced in slices of 1 ms; 0 or unset: as fast as possible), BENCH_START_NS (a
CLOCK_MONOTONIC time to wait for first, so that all workers start together once their
interpreters are up). Nothing else here opens a file or sends (`time` is built in), so a run
makes exactly BENCH_OPENS more records than a run with BENCH_OPENS=0."""
import os
import time

_n = int(os.environ.get("BENCH_OPENS", "0"))
_port = int(os.environ.get("BENCH_UDP_PORT", "0"))
_path = os.environ.get("BENCH_MARKER")
if _port:
    import socket

    _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _addr = ("127.0.0.1", _port)

    def _one():
        _sock.sendto(b"x", _addr)

elif _path:

    def _one():
        os.close(os.open(_path, os.O_RDONLY))

else:
    _n = 0
_rate = float(os.environ.get("BENCH_RATE", "0") or 0)
_wait = int(os.environ.get("BENCH_START_NS", "0")) - time.monotonic_ns()
if _n and _wait > 0:
    time.sleep(_wait / 1e9)
if _rate <= 0:
    for _ in range(_n):
        _one()
else:
    _slice = max(1, int(_rate / 1000))
    _start = time.monotonic()
    _done = 0
    while _done < _n:
        for _ in range(min(_slice, _n - _done)):
            _one()
        _done += min(_slice, _n - _done)
        _ahead = _start + _done / _rate - time.monotonic()
        if _ahead > 0:
            time.sleep(_ahead)
