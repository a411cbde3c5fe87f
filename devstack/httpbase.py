"""Small shared pieces for the dev-stack HTTP servers (stdlib http.server only)."""

import contextlib
import json
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_REQUEST_BODY = 64 * 1024  # the dev servers never need more; refuse anything bigger


MAX_LOGGED_REQUESTS = 100_000  # the request timeline keeps the most recent ones


class DevServer(ThreadingHTTPServer):
    """Loopback server that counts requests per path (GET /_stats on the IdP shows them).

    It also keeps a timeline of the requests it received (arrival time, method, path), so a
    test can tell *when* something was fetched, not only how often; paths starting with `/_`
    (the servers' own control and statistics endpoints) are counted but left out of it.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler_class):
        super().__init__(address, handler_class)
        self.counts_lock = threading.Lock()
        self.path_counts: Counter = Counter()
        self.request_log: deque = deque(maxlen=MAX_LOGGED_REQUESTS)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def count(self, path: str, method: str = "GET") -> None:
        with self.counts_lock:
            self.path_counts[path] += 1
            if not path.startswith("/_"):
                self.request_log.append({"t": time.time(), "method": method, "path": path})

    def snapshot_counts(self) -> dict:
        with self.counts_lock:
            return dict(self.path_counts)

    def snapshot_log(self) -> list[dict]:
        with self.counts_lock:
            return list(self.request_log)

    def reset_counts(self) -> None:
        with self.counts_lock:
            self.path_counts.clear()
            self.request_log.clear()


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with Envoy, like a real backend
    server: DevServer

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass  # quiet: Envoy's log is the one worth reading

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True  # not worth a chunked decoder here; drop the connection
            return b""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BODY:
            self.close_connection = True
            raise ValueError(f"request body of {length} bytes is too large")
        return self.rfile.read(length) if length else b""

    def send_bytes(self, status: int, body: bytes, content_type: str, extra_headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload, extra_headers=None) -> None:
        body = json.dumps(payload, indent=None).encode()
        self.send_bytes(status, body, "application/json", extra_headers)


def start_in_thread(server: DevServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name=type(server).__name__, daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def running(server: DevServer):
    """Serve on a background thread for the duration of a `with` block, then close the socket."""
    thread = start_in_thread(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_until_interrupted(server, banner: str) -> None:
    """Prints where the server listens, then serves until Ctrl-C (the dev stack's `main`s)."""
    print(banner, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
