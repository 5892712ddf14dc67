"""The EC2 instance metadata endpoint (IMDSv2), and a local stand-in for it.

A spot instance learns it will be reclaimed from ``spot/instance-action``, about two
minutes ahead: ``{"action": "terminate", "time": "2026-11-26T17:00:00Z"}``; until then
the path answers 404. IMDSv2 needs a session token from ``PUT /latest/api/token``.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_ENDPOINT = "http://169.254.169.254"
_TOKEN_PATH = "/latest/api/token"
_ACTION_PATH = "/latest/meta-data/spot/instance-action"


@dataclass(frozen=True)
class Notice:
    action: str  # terminate | stop | hibernate
    time: float  # unix seconds when the instance goes


class InstanceMetadata:
    """A client of the metadata endpoint (configurable, so it can be a local server)."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout_s: float = 2.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._timeout = timeout_s

    def notice(self) -> Notice | None:
        """The pending interruption notice, or None."""
        token_request = urllib.request.Request(
            self.endpoint + _TOKEN_PATH, method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
        with urllib.request.urlopen(token_request, timeout=self._timeout) as r:
            token = r.read().decode()
        request = urllib.request.Request(self.endpoint + _ACTION_PATH,
                                         headers={"X-aws-ec2-metadata-token": token})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as r:
                body = json.loads(r.read().decode())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        when = datetime.strptime(body["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return Notice(body["action"], when.timestamp())


class FakeMetadataServer:
    """A metadata endpoint on 127.0.0.1 for one simulated spot node (IMDSv2 semantics:
    a token is required; instance-action is 404 until a notice is issued)."""

    def __init__(self) -> None:
        self._notice: Notice | None = None
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                if self.path == _TOKEN_PATH:
                    self._send(200, b"local-token")
                else:
                    self._send(404, b"")

            def do_GET(self) -> None:
                server.requests += 1
                if self.headers.get("X-aws-ec2-metadata-token") != "local-token":
                    self._send(401, b"")
                elif self.path == _ACTION_PATH and server._notice is not None:
                    n = server._notice
                    stamp = datetime.fromtimestamp(n.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    self._send(200, json.dumps({"action": n.action, "time": stamp}).encode())
                else:
                    self._send(404, b"")

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def issue(self, at: float, action: str = "terminate") -> None:
        """Announce that the instance goes at unix time ``at``."""
        self._notice = Notice(action, at)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
