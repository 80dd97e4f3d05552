#!/usr/bin/env python3
"""A webhook receiver for premain's delivery tests, on 127.0.0.1 only.

POST to any path other than the control ones is an alert delivery. What it answers depends on
the current mode, set by the test:

  POST /_mode {"mode": "ok" | "fail" | "stall", "delay": seconds}
      ok:    200 after `delay` seconds (default 0), and the batch is recorded
      fail:  500, nothing recorded
      stall: reads the request and sleeps 3600 s without answering (the client times out)
  GET  /_received   every record received so far (batches flattened), in arrival order
  GET  /_stats      {"posts": n, "failed": n, "stalled": n}

Prints its port as the first line of stdout; exits when stdin closes, so it never outlives
the test that started it.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"mode": "ok", "delay": 0.0, "received": [], "posts": 0, "failed": 0, "stalled": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            if self.path == "/_received":
                body = json.dumps(state["received"]).encode()
            elif self.path == "/_stats":
                body = json.dumps({k: state[k] for k in ("posts", "failed", "stalled")}).encode()
            else:
                return self.reply(404)
        self.reply(200, body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/_mode":
            update = json.loads(raw)
            with lock:
                state["mode"] = update["mode"]
                state["delay"] = float(update.get("delay", 0))
            return self.reply(200, b"{}")
        with lock:
            mode, delay = state["mode"], state["delay"]
            state["posts"] += 1
        if mode == "fail":
            with lock:
                state["failed"] += 1
            return self.reply(500, b'{"error":"induced"}')
        if mode == "stall":
            with lock:
                state["stalled"] += 1
            time.sleep(3600)
            return
        time.sleep(delay)
        payload = json.loads(raw)
        with lock:
            state["received"].extend(payload if isinstance(payload, list) else [payload])
        self.reply(200, b"{}")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()


if __name__ == "__main__":
    main()
