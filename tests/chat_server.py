"""An OpenAI-compatible chat-completions server on 127.0.0.1 for the tests: real HTTP, canned replies.

``ChatServer(respond)`` serves ``POST /v1/chat/completions`` in a thread. ``respond(messages, seen)`` gets the
request's messages and how many times the same request body came before, and returns the reply text or a
:class:`Canned` answer (an HTTP status, a delay, a finish reason, a raw body). Every request body is kept in
``server.requests``, with its headers in ``server.headers``.

:func:`fake_model` answers the evol and ranking prompts of deita-hf like a well-behaved model whose
evolutions append `` +`` to the text and whose ranking gives each variant ``1 + its number of "+"``, so
that a variant's true score is its round + 1.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from deita_hf.constants import RETRY_PROMPT


@dataclass
class Canned:
    text: str = ""
    status: int = 200
    delay: float = 0.0
    finish_reason: str = "stop"
    raw: bytes | None = None
    headers: dict[str, str] | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping after the client gave up does not hold the shutdown
    block_on_close = False
    request_queue_size = 128  # many clients connect at once


class ChatServer:
    def __init__(self, respond):
        self.respond = respond
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._seen: Counter = Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = json.dumps(body, sort_keys=True)
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    seen = server._seen[key]
                    server._seen[key] += 1
                answer = server.respond(body["messages"], seen)
                if isinstance(answer, str):
                    answer = Canned(answer)
                time.sleep(answer.delay)
                payload = answer.raw
                if payload is None and answer.status == 200:
                    payload = json.dumps(
                        {
                            "id": "test",
                            "object": "chat.completion",
                            "model": body["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": answer.text},
                                    "finish_reason": answer.finish_reason,
                                }
                            ],
                            # Counted as OpenAI does it, roughly: clients such as alpaca-eval read the total.
                            "usage": {
                                "prompt_tokens": len(key) // 4,
                                "completion_tokens": len(answer.text) // 4,
                                "total_tokens": len(key) // 4 + len(answer.text) // 4,
                            },
                        }
                    ).encode()
                elif payload is None:
                    payload = json.dumps({"error": {"message": answer.text or "error"}}).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in (answer.headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


_TAGGED = re.compile(r"<(request|response)>\n(.*?)\n</\1>", re.DOTALL)
_SHOWN = re.compile(
    r"\[(Version|Response) (\d+)\]\n(.*?)(?=\n\n\[(?:Version|Response) \d+\]|\n\nAnswer with)", re.DOTALL
)


def is_retry(messages) -> bool:
    return messages[-1]["content"].startswith(RETRY_PROMPT.split("{")[0])


def fake_model(messages, seen: int = 0) -> str:
    """A well-behaved model for the evol and ranking prompts (retries answer the first request again)."""
    prompt = messages[0]["content"]
    shown = _SHOWN.findall(prompt)
    if shown:
        return "\n".join(f"{label} {number}: {min(6, text.count('+') + 1)}" for label, number, text in shown)
    tagged = dict((tag, text) for tag, text in _TAGGED.findall(prompt))
    if "response" in tagged:
        return f"Here you are.\n<response>\n{tagged['response']} +\n</response>"
    return f"<request>\n{tagged['request']} +\n</request>"
