#!/usr/bin/env python3
"""A stand-in for the part of the Kubernetes API server premain's pod watch talks to.

Serves `GET /api/v1/pods` as a paginated LIST and as a WATCH (`watch=1`) streaming
newline-delimited JSON events over chunked transfer encoding, the way the real API server does.
Every API request must carry `Authorization: Bearer <token>` (401 otherwise) and
`fieldSelector=spec.nodeName=<node>` (400 otherwise).

Tests drive it through control endpoints (no auth; it only listens on 127.0.0.1):

  POST   /_pods               {"uid", "name", "namespace", "node", "labels", "annotations",
                               "silent"}: create or replace a pod (ADDED / MODIFIED event;
                               "silent" changes state without an event, like one lost to
                               compaction)
  DELETE /_pods/<uid>[?silent=1]
  POST   /_expire             {"mode": "event" | "status"}: compact history; open watches end
                              (with an ERROR 410 event, or by closing so the client's
                              reconnect gets HTTP 410), and older resourceVersions get 410
  POST   /_fail               {"status": 500, "count": n}: the next n API requests fail
  POST   /_token              {"token": "..."}: the only token accepted from now on
  POST   /_short_watches      {"on": true}: watches answer 200 and close at once, no events
  GET    /_requests           every API request so far: method, path, query, auth, status,
                              t (monotonic seconds)

Prints the port it listens on as the first line of stdout, and exits when stdin closes so
that it never outlives the test that started it.
"""

import argparse
import base64
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class State:
    def __init__(self, node, token, page_size):
        self.cond = threading.Condition()
        self.node = node
        self.token = token
        self.page_size = page_size
        self.rv = 100
        self.pods = {}
        # (resourceVersion, type, pod), oldest first; only this node's pods.
        self.events = []
        # Watches from an older resourceVersion are answered 410 Gone.
        self.oldest_rv = 0
        # Bumped by /_expire so open watches notice.
        self.generation = 0
        self.expire_mode = "event"
        self.failures = []
        self.short_watches = False
        self.requests = []


STATE = None


def pod_object(spec, rv):
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": spec["name"],
            "namespace": spec.get("namespace", "default"),
            "uid": spec["uid"],
            "resourceVersion": str(rv),
            "labels": spec.get("labels") or {},
            "annotations": spec.get("annotations") or {},
        },
        "spec": {"nodeName": spec.get("node", STATE.node), "containers": [{"name": "main"}]},
        "status": {"phase": "Running"},
    }


def status_object(code, reason, message):
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    # Plumbing.

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def send_event(self, kind, obj):
        line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        # Split each event over two chunks: a client must reassemble lines.
        half = len(line) // 2
        self.chunk(line[:half])
        self.chunk(line[half:])

    # Control endpoints.

    def do_POST(self):
        st = STATE
        path = urlsplit(self.path).path
        body = self.body()
        with st.cond:
            if path == "/_pods":
                st.rv += 1
                pod = pod_object(body, st.rv)
                kind = "MODIFIED" if body["uid"] in st.pods else "ADDED"
                st.pods[body["uid"]] = pod
                if not body.get("silent") and pod["spec"]["nodeName"] == st.node:
                    st.events.append((st.rv, kind, pod))
            elif path == "/_expire":
                st.rv += 1
                st.oldest_rv = st.rv
                st.generation += 1
                st.expire_mode = body.get("mode", "event")
            elif path == "/_fail":
                st.failures.extend([body.get("status", 500)] * body.get("count", 1))
            elif path == "/_token":
                st.token = body["token"]
            elif path == "/_short_watches":
                st.short_watches = bool(body.get("on"))
            else:
                self.reply(404, status_object(404, "NotFound", path))
                return
            st.cond.notify_all()
        self.reply(200, {"rv": st.rv})

    def do_DELETE(self):
        st = STATE
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not url.path.startswith("/_pods/"):
            self.reply(404, status_object(404, "NotFound", url.path))
            return
        uid = url.path[len("/_pods/"):]
        with st.cond:
            pod = st.pods.pop(uid, None)
            if pod is None:
                self.reply(404, status_object(404, "NotFound", uid))
                return
            st.rv += 1
            pod = json.loads(json.dumps(pod))
            pod["metadata"]["resourceVersion"] = str(st.rv)
            if not query.get("silent") and pod["spec"]["nodeName"] == st.node:
                st.events.append((st.rv, "DELETED", pod))
            st.cond.notify_all()
        self.reply(200, {"rv": st.rv})

    # The API.

    def do_GET(self):
        st = STATE
        url = urlsplit(self.path)
        if url.path == "/_requests":
            with st.cond:
                self.reply(200, list(st.requests))
            return
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        entry = {
            "method": "GET",
            "path": url.path,
            "query": query,
            "auth": self.headers.get("Authorization"),
            "status": None,
            "t": time.monotonic(),
        }
        with st.cond:
            st.requests.append(entry)
            code, payload = self.check(url.path, query)
            entry["status"] = code
        if code != 200:
            self.reply(code, payload)
        elif query.get("watch") in ("1", "true"):
            self.watch(query)
        else:
            self.list(query)

    def check(self, path, query):
        """The status of an API request and, when not 200, its Status body. Holds the lock."""
        st = STATE
        if path != "/api/v1/pods":
            return 404, status_object(404, "NotFound", path)
        if self.headers.get("Authorization") != "Bearer " + st.token:
            return 401, status_object(401, "Unauthorized", "Unauthorized")
        selector = "spec.nodeName=" + st.node
        if query.get("fieldSelector") != selector:
            return 400, status_object(400, "BadRequest", "fieldSelector must be " + selector)
        if st.failures:
            code = st.failures.pop(0)
            return code, status_object(code, "InternalError", "injected failure")
        if query.get("watch") in ("1", "true"):
            rv = int(query.get("resourceVersion") or 0)
            if rv < st.oldest_rv:
                return 410, status_object(410, "Expired", "too old resource version: %d (%d)" % (rv, st.oldest_rv))
        return 200, None

    def list(self, query):
        st = STATE
        limit = min(int(query.get("limit") or 500), st.page_size)
        with st.cond:
            if query.get("continue"):
                token = json.loads(base64.b64decode(query["continue"]))
                offset, rv = token["offset"], token["rv"]
            else:
                offset, rv = 0, st.rv
            mine = sorted(
                (p for p in st.pods.values() if p["spec"]["nodeName"] == st.node),
                key=lambda p: p["metadata"]["uid"],
            )
        page = mine[offset:offset + limit]
        metadata = {"resourceVersion": str(rv)}
        if offset + limit < len(mine):
            token = json.dumps({"offset": offset + limit, "rv": rv}).encode()
            metadata["continue"] = base64.b64encode(token).decode()
        self.reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": page})

    def watch(self, query):
        st = STATE
        last = int(query.get("resourceVersion") or 0)
        deadline = time.monotonic() + int(query.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            with st.cond:
                generation = st.generation
                short = st.short_watches
            if not short:
                self.stream(last, deadline, generation)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def stream(self, last, deadline, generation):
        st = STATE
        bookmarked = False
        while True:
            with st.cond:
                while True:
                    expired = st.generation != generation
                    pending = [e for e in st.events if e[0] > last]
                    remaining = deadline - time.monotonic()
                    if expired or pending or remaining <= 0 or not bookmarked:
                        break
                    st.cond.wait(min(remaining, 1.0))
                mode = st.expire_mode
                current = st.rv
            if expired:
                if mode == "event":
                    self.send_event("ERROR", status_object(410, "Expired", "too old resource version"))
                return
            for rv, kind, pod in pending:
                self.send_event(kind, pod)
                last = rv
            if not bookmarked:
                bookmark = {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": str(current)}}
                self.send_event("BOOKMARK", bookmark)
                last = max(last, current)
                bookmarked = True
            if not pending and remaining <= 0:
                return


def main():
    global STATE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--page-size", type=int, default=2)
    parser.add_argument("--cert", help="serve https with this certificate chain (PEM)")
    parser.add_argument("--key", help="the certificate's private key (PEM)")
    args = parser.parse_args()
    STATE = State(args.node, args.token, args.page_size)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)

    def watchdog():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
