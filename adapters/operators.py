"""Operator accounts: each operator signs in to the operator API with a token of their own, so
one who leaves is removed alone (the shared ANSWERDESK_ADMIN_TOKEN stays the owner's) and the
name customers see is the account's, not one typed at sign-in.

Redis keeps only a SHA-256 digest of each token (tokens are 32 random bytes: a digest cannot be
guessed back), in one hash shared by every worker: digest -> {"name", "created"}."""

import hashlib
import json
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

NAME_CHARS = 64
# Who FAQ history names for the ways in without an operator's token; no operator's name.
OWNER, CLI = "admin token", "command line"
RESERVED = {OWNER, CLI}


class OperatorError(ValueError):
    """An operator account cannot be added or found; the message says why."""


class OperatorExists(OperatorError):
    """There is an operator with this name already."""


@dataclass(frozen=True)
class OperatorAccount:
    name: str
    created: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class OperatorAccounts:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._key = f"{prefix}:operators"

    async def add(self, name: str) -> str:
        """A new account; returns its token, which is shown this once and kept nowhere."""
        name = name.strip()
        if not name or len(name) > NAME_CHARS or not name.isprintable() or "/" in name:
            raise OperatorError(
                f"An operator's name is what customers see: 1 to {NAME_CHARS} printable "
                "characters, without /."
            )
        if name.casefold() in RESERVED:
            raise OperatorError(f"{name!r} names changes made without an operator's token.")
        if name in {o.name for o in await self.all()}:
            raise OperatorExists(
                f"There is an operator named {name!r}; remove it first for a new token "
                f"(answerdesk operators rm {name!r})."
            )
        token = f"op_{secrets.token_urlsafe(32)}"
        record = json.dumps({"name": name, "created": time.time()})
        await self._redis.hset(self._key, _digest(token), record)
        return token

    async def who(self, token: str) -> str | None:
        """The name of the operator whose token this is, or None."""
        raw = await self._redis.hget(self._key, _digest(token))
        return None if raw is None else str(json.loads(raw)["name"])

    async def all(self) -> list[OperatorAccount]:
        records = (json.loads(v) for v in (await self._redis.hgetall(self._key)).values())
        accounts = (OperatorAccount(r["name"], r["created"]) for r in records)
        return sorted(accounts, key=lambda o: o.name)

    async def remove(self, name: str) -> bool:
        """Remove the account: its token stops working at the next request."""
        found = [
            digest
            for digest, raw in (await self._redis.hgetall(self._key)).items()
            if json.loads(raw)["name"] == name
        ]
        return bool(found) and bool(await self._redis.hdel(self._key, *found))

    async def exist(self) -> bool:
        return bool(await self._redis.hlen(self._key))
