"""A JSON-RPC node over the durable embedded chain, as a process of its own, for the kill -9 tests.

    python -m tests.chain.durable_node DATA_DIR PORT_FILE

Opens ``EmbeddedBackend(data_dir=DATA_DIR)`` (replaying its log), serves POST bodies through
``backend.forward_bytes`` on a free loopback port, and writes the port to PORT_FILE once it listens.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from marketplace.chain.backends import EmbeddedBackend
from marketplace.settings import ProjectConfig


def main(data_dir: str, port_file: str) -> None:
    project = ProjectConfig.load(Path(__file__).resolve().parents[2])
    backend = EmbeddedBackend(project.mnemonic, 10, data_dir=Path(data_dir))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            answer = json.dumps(backend.forward_bytes(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = port_file + ".tmp"
    Path(tmp).write_text(str(server.server_address[1]))
    os.replace(tmp, port_file)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
