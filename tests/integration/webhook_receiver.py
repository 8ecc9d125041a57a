"""A webhook receiver for the integration tests, run as a process of its own on loopback.

It verifies every delivery with the standardwebhooks library against the secrets it was given, and
answers each delivery's attempts (by webhook-id) as its script says: ``"500"`` (or any status), then
``"hang:SECONDS"`` (say nothing for that long: longer than the sender's timeout), then ``"ok"``;
attempts past the script get ``"ok"``. Everything it received is in its log.

    python tests/integration/webhook_receiver.py     # prints "port N" once it listens

Control, as JSON: ``POST /_configure {"secrets": [...], "script": [...]}``, ``GET /_log``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

state: dict[str, Any] = {"secrets": [], "script": []}
log: list[dict[str, Any]] = []
attempts: dict[str, int] = {}
lock = threading.Lock()


def verified(body: bytes, headers: dict[str, str]) -> dict[str, Any] | None:
    for secret in state["secrets"]:
        try:
            return Webhook(secret).verify(body, headers)
        except WebhookVerificationError:
            continue
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, document: Any = None) -> None:
        body = json.dumps(document if document is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with lock:
            self._answer(200, list(log))

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_configure":
            with lock:
                state.update(json.loads(body))
            return self._answer(200, state)
        headers = {name.lower(): value for name, value in self.headers.items()}
        payload = verified(body, headers)
        message_id = headers.get("webhook-id", "")
        with lock:
            attempt = attempts.get(message_id, 0)
            attempts[message_id] = attempt + 1
            script = state["script"]
            action = script[attempt] if attempt < len(script) else "ok"
            entry = {
                "webhook_id": message_id, "attempt": attempt + 1, "verified": payload is not None,
                "type": payload and payload["type"], "run_id": payload and payload["data"]["id"],
                "path": self.path, "host": headers.get("host"), "action": action,
                "started": time.time(), "finished": None,
            }
            log.append(entry)
        if payload is None:
            action = "400"
        if action.startswith("hang:"):
            time.sleep(float(action.split(":", 1)[1]))
            action = "ok"
        try:
            self._answer(200 if action == "ok" else int(action), {"received": message_id})
        except OSError:
            pass  # the sender gave up (its timeout) or died
        with lock:
            entry["finished"] = time.time()


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    server.daemon_threads = True
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
