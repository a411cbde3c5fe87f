"""Fake upstream standing in for Databricks: echoes every request back as JSON.

`python -m devstack.upstream --port 9500`. Any method, any path → 200
{"method": ..., "path": ..., "headers": {lower-case name: [values...]}}, so tests can read
exactly what Envoy forwarded (identity headers, Authorization, the rewritten path).
"""

import argparse

from devstack.httpbase import DevServer, JsonHandler, serve_until_interrupted

ECHO_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class EchoHandler(JsonHandler):
    def echo(self) -> None:
        self.server.count(self.path.split("?", 1)[0])
        try:
            self.read_body()
        except ValueError as err:
            self.send_json(413, {"error": str(err)})
            return
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        self.send_json(200, {"method": self.command, "path": self.path, "headers": headers})


for _method in ECHO_METHODS:
    setattr(EchoHandler, f"do_{_method}", EchoHandler.echo)


def make_upstream(port: int = 0, host: str = "127.0.0.1") -> DevServer:
    return DevServer((host, port), EchoHandler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9500)
    args = parser.parse_args()
    server = make_upstream(args.port)
    serve_until_interrupted(server, f"fake upstream listening on http://127.0.0.1:{server.port}")


if __name__ == "__main__":
    main()
