"""A minimal Terraform http state backend handler for tests that run real Terraform against
one: replies with Content-Length, reads bodies whole, grants LOCK and UNLOCK, logs nothing.
Tests subclass it for GET/POST behaviour of their own."""

from http.server import BaseHTTPRequestHandler


class StateBackendHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_LOCK(self):
        self._body()
        self._reply(200)

    def do_UNLOCK(self):
        self._body()
        self._reply(200)
