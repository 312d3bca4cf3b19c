"""A real HTTP endpoint, in a thread, that records the JSON POSTed to it (the operators' team
chat a handoff webhook posts to), answering each session's posts with the statuses planned."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []  # every request's body, with the status answered
        self.plan: dict[str, list[int]] = {}  # session id -> statuses for its next posts
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with receiver._lock:
                    planned = receiver.plan.get(body.get("session_id"), [])
                    status = planned.pop(0) if planned else 200
                    receiver.posts.append({**body, "answered": status})
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/T0/B0/x"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def posts_for(self, session_id: str, count: int = 1, timeout: float = 30) -> list[dict]:
        """The posts about `session_id`, once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [p for p in self.posts if p.get("session_id") == session_id]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
