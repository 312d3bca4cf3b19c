"""A stand-in for the Telegram Bot API on 127.0.0.1, for the real aiogram Bot and Dispatcher.

It records every request, serves getUpdates (long polling) from a queue, answers the methods
answerdesk uses with objects shaped as in the Bot API documentation, and can answer 429.
"""

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_USER = {"id": 4242, "is_bot": True, "first_name": "Pinecone", "username": "pinecone_bot"}


def user(uid: int = 555, name: str = "Ann") -> dict[str, Any]:
    return {"id": uid, "is_bot": False, "first_name": name, "language_code": "en"}


def private_chat(uid: int = 555, name: str = "Ann") -> dict[str, Any]:
    return {"id": uid, "first_name": name, "type": "private"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    result: Any = None


@dataclass
class FakeTelegram:
    token: str = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"
    calls: list[Call] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    rate_limit_next: dict[str, int] = field(default_factory=dict)  # method -> 429s to answer
    refuse_next: dict[str, int] = field(default_factory=dict)  # method -> 400s to answer
    files: dict[str, bytes] = field(default_factory=dict)  # file_id -> content, for getFile
    url: str = ""
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1000))
    _update_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def start(self) -> "FakeTelegram":
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # What tests use ---------------------------------------------------------------------------

    def update(self, **payload: Any) -> dict[str, Any]:
        """A new Update with the next update_id; `payload` is e.g. message={…}."""
        return {"update_id": next(self._update_ids), **payload}

    def message(self, text: str | None = None, chat: int = 555, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message_id": next(self._ids),
            "from": user(chat),
            "chat": private_chat(chat),
            "date": int(time.time()),
            **extra,
        }
        if text is not None:
            body["text"] = text
            if text.startswith("/"):
                command = text.split()[0]
                body["entities"] = [{"offset": 0, "length": len(command), "type": "bot_command"}]
        return body

    def push(self, *updates: dict[str, Any]) -> None:
        """Queue updates for getUpdates."""
        self.updates.extend(updates)
        self._arrived.set()

    def sent(self, method: str, chat: int | None = None) -> list[dict[str, Any]]:
        return [
            c.params
            for c in self.calls
            if c.method == method and (chat is None or str(c.params.get("chat_id")) == str(chat))
        ]

    def posted(self, chat: int) -> list[dict[str, Any]]:
        """The messages the bot sent to `chat`, as the Bot API returned them (with their ids)."""
        return [
            {**c.result, "params": c.params}
            for c in self.calls
            if c.method == "sendMessage" and str(c.params.get("chat_id")) == str(chat) and c.result
        ]

    async def wait_for(self, predicate: Any, within: float = 60) -> None:
        """Until `predicate()` (sync or async) holds, or fail after `within` seconds."""
        deadline = time.monotonic() + within
        while not await _holds(predicate):
            if time.monotonic() > deadline:
                methods = [(c.method, str(c.params)[:120]) for c in self.calls[-15:]]
                raise AssertionError(f"timed out; last Bot API calls: {methods}")
            await asyncio.sleep(0.05)

    # The Bot API ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        method = request.match_info["method"]
        params: dict[str, Any] = {}
        if request.content_type == "application/json":  # as any HTTP client may call it
            params = await request.json()
        elif request.can_read_body:  # aiogram sends forms
            form = await request.post()
            params = {k: _value(v) for k, v in form.items()}  # an uploaded file: its bytes
            for name, value in list(params.items()):  # {"photo": "attach://x", "x": b"…"}
                if isinstance(value, str) and value.startswith("attach://"):
                    params[name] = params.pop(value.removeprefix("attach://"), value)
        call = Call(method, params)
        self.calls.append(call)
        if self.rate_limit_next.get(method, 0) > 0:
            self.rate_limit_next[method] -= 1
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 2",
                    "parameters": {"retry_after": 2},
                },
                status=429,
            )
        refused = self.refuse_next.get(method, 0) > 0  # as for a message too old to delete
        if refused:
            self.refuse_next[method] -= 1
        if refused or (method == "getFile" and str(params.get("file_id")) not in self.files):
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: refused"},
                status=400,
            )
        call.result = await getattr(self, f"_{method.lower()}", self._true)(params)
        return web.json_response({"ok": True, "result": call.result})

    async def _download(self, request: web.Request) -> web.Response:
        """A file's content at the address getFile gave (file_path "files/{file_id}")."""
        found = self.files.get(request.match_info["path"].removeprefix("files/"))
        if request.match_info["token"] != self.token or found is None:
            return web.Response(status=404)
        return web.Response(body=found)

    async def _getfile(self, params: dict[str, Any]) -> Any:
        file_id = str(params["file_id"])  # one of `files` (see _handle)
        return {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "file_size": len(self.files[file_id]),
            "file_path": f"files/{file_id}",
        }

    async def _true(self, params: dict[str, Any]) -> Any:
        return True

    async def _getme(self, params: dict[str, Any]) -> Any:
        return BOT_USER

    async def _getupdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset", 0))
        deadline = time.monotonic() + min(float(params.get("timeout", 0)), 1.0)
        while True:
            ready = [u for u in self.updates if u["update_id"] >= offset]
            if ready or time.monotonic() >= deadline:
                return ready
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), deadline - time.monotonic())
            except TimeoutError:
                return []

    async def _sendmessage(self, params: dict[str, Any]) -> Any:
        return self._message_result(params, next(self._ids))

    async def _senddocument(self, params: dict[str, Any]) -> Any:
        return self._message_result(params, next(self._ids))

    async def _sendphoto(self, params: dict[str, Any]) -> Any:
        return self._message_result(params, next(self._ids))

    async def _copymessage(self, params: dict[str, Any]) -> Any:
        return {"message_id": next(self._ids)}

    async def _editmessagetext(self, params: dict[str, Any]) -> Any:
        return self._message_result(params, int(params["message_id"]))

    def _message_result(self, params: dict[str, Any], message_id: int) -> dict[str, Any]:
        chat = int(params["chat_id"])
        where = private_chat(chat) if chat > 0 else {"id": chat, "title": "Group", "type": "group"}
        return {
            "message_id": message_id,
            "from": BOT_USER,
            "chat": where,
            "date": int(time.time()),
            "text": params.get("text", ""),
        }


def _value(raw: Any) -> Any:
    if isinstance(raw, web.FileField):
        return raw.file.read()
    text = str(raw)
    if text[:1] in "{[":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


async def _holds(predicate: Any) -> bool:
    result = predicate()
    if asyncio.iscoroutine(result):
        result = await result
    return bool(result)
