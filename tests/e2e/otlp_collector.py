"""A fake OpenTelemetry collector: an h2c gRPC server that accepts LogsService/Export calls and
keeps each request's raw protobuf body (tests look for strings in it; no protobuf library needed)."""

import socket
import threading

import h2.config
import h2.connection
import h2.events

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


class OtlpCollector:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.exports: list[bytes] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def received(self) -> bytes:
        with self.lock:
            return b"".join(self.exports)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        h2conn.initiate_connection()
        conn.sendall(h2conn.data_to_send())
        bodies: dict[int, bytearray] = {}
        paths: dict[int, str] = {}
        while True:
            data = conn.recv(65536)
            if not data:
                return
            for event in h2conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    paths[event.stream_id] = dict(event.headers).get(":path", "")
                    bodies[event.stream_id] = bytearray()
                elif isinstance(event, h2.events.DataReceived):
                    bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                    h2conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    body = bytes(bodies.pop(event.stream_id, b""))
                    if paths.pop(event.stream_id, "") == EXPORT:
                        with self.lock:
                            self.exports.append(body)
                    h2conn.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                    h2conn.send_data(event.stream_id, b"\x00\x00\x00\x00\x00")  # an empty ExportLogsServiceResponse
                    h2conn.send_headers(event.stream_id, [("grpc-status", "0")], end_stream=True)
            conn.sendall(h2conn.data_to_send())

    def close(self) -> None:
        self.sock.close()
