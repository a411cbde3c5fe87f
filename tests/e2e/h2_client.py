"""A minimal HTTP/2 client for e2e tests: cleartext with prior knowledge (h2c), one request per
connection, the body in as many DATA frames as it has chunks, optional trailers.

    reply = h2_request(port, "POST", "/serving-endpoints/chat/completions",
                       [("authorization", f"Bearer {token}"), ("content-type", "application/json")],
                       body_chunks=[b'{"model": ', b'"chat"}'], trailers=[("x-checksum", "1")])
    reply.status, reply.headers, reply.body, reply.trailers, reply.forwarded

The reply is a `gateway_client.Reply`, so `assert_refused` and `.forwarded` work on it as on
HTTP/1.1 replies. A stream the server resets before answering raises `StreamReset`. Header names
must be lower-case (HTTP/2 forbids upper case; the h2 package refuses to send them).
"""

import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from gateway_client import Reply

Headers = Sequence[tuple[str, str]]


@dataclass
class H2Reply(Reply):
    trailers: list[tuple[str, str]] = field(default_factory=list)


class StreamReset(Exception):
    """The server reset the stream (or closed the connection) before the response ended."""

    def __init__(self, error_code: int | None, detail: str):
        super().__init__(f"stream reset ({detail}, error code {error_code})")
        self.error_code = error_code


def h2_request(port: int, method: str, path: str, headers: Headers, body_chunks: Iterable[bytes] = (),
               trailers: Headers | None = None, timeout: float = 5) -> H2Reply:
    """One request on a fresh h2c connection to 127.0.0.1:`port`; waits for the whole response."""
    deadline = time.monotonic() + timeout
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        client = _Client(sock, connection, deadline)
        connection.initiate_connection()
        stream_id = connection.get_next_available_stream_id()
        chunks = [bytes(chunk) for chunk in body_chunks]
        request_headers = [(":method", method), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"),
                           (":path", path), *headers]
        connection.send_headers(stream_id, request_headers, end_stream=not chunks and trailers is None)
        client.flush()
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1 and trailers is None
            if not client.send_data(stream_id, chunk, end_stream=last):
                break  # the server already answered (a local reply): the rest is not needed
        else:
            if trailers is not None and not client.response_ended:
                try:
                    connection.send_headers(stream_id, list(trailers), end_stream=True)
                    client.flush()
                except h2.exceptions.StreamClosedError:
                    pass
        return client.read_response()


class _Client:
    """The socket and the h2 state machine of one connection, and the response read so far."""

    def __init__(self, sock: socket.socket, connection: h2.connection.H2Connection, deadline: float):
        self.sock, self.connection, self.deadline = sock, connection, deadline
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.trailers: list[tuple[str, str]] = []
        self.response_ended = False

    def flush(self) -> None:
        data = self.connection.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_data(self, stream_id: int, chunk: bytes, end_stream: bool) -> bool:
        """Sends `chunk` as its own DATA frame(s), waiting for flow-control window; False if the
        stream closed first."""
        remaining = chunk
        while True:
            if self.response_ended:
                return False
            window = min(self.connection.local_flow_control_window(stream_id), self.connection.max_outbound_frame_size)
            if window <= 0 and remaining:
                self._receive_once()
                continue
            piece, remaining = remaining[:window], remaining[window:]
            try:
                self.connection.send_data(stream_id, piece, end_stream=end_stream and not remaining)
            except h2.exceptions.StreamClosedError:
                return False
            self.flush()
            if not remaining:
                return True

    def read_response(self) -> H2Reply:
        while not self.response_ended:
            self._receive_once()
        assert self.status is not None, "response ended without headers"
        return H2Reply(self.status, self.headers, bytes(self.body), self.trailers)

    def _receive_once(self) -> None:
        self.sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
        data = self.sock.recv(65536)
        if not data:
            raise StreamReset(None, "connection closed")
        for event in self.connection.receive_data(data):
            self._handle(event)
        self.flush()

    def _handle(self, event: h2.events.Event) -> None:
        if self.response_ended:
            return  # a reset after the response ended (Envoy's local replies) changes nothing
        if isinstance(event, h2.events.ResponseReceived):
            for name, value in event.headers:
                if name == ":status":
                    self.status = int(value)
                elif not name.startswith(":"):
                    self.headers.append((name, value))
        elif isinstance(event, h2.events.DataReceived):
            self.body += event.data
            self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            self.trailers.extend(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            self.response_ended = True
        elif isinstance(event, h2.events.StreamReset):
            raise StreamReset(event.error_code, "RST_STREAM")
        elif isinstance(event, h2.events.ConnectionTerminated):
            raise StreamReset(event.error_code, f"GOAWAY {event.additional_data!r}")
