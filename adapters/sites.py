"""Web sites that embed the chat widget: a public site key, the origins allowed to use it, and
the widget's look. Stored in Redis so every worker sees the same sites."""

import json
import re
import secrets
from dataclasses import asdict, dataclass, field, replace

from redis.asyncio import Redis

ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
COLOUR = re.compile(r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
LINK = re.compile(r"^https?://[^\s\"'<>]+$")


class SiteError(ValueError):
    """A site's settings are invalid; the message names the field."""


@dataclass(frozen=True)
class Site:
    key: str
    name: str
    origins: tuple[str, ...] = ()
    title: str = "Customer support"
    greeting: str = "Hi! Ask me about orders, shipping, returns, payments or your account."
    colour: str = "#2563eb"
    language: str = "en"
    # The site's privacy notice, linked under the widget's input (how customers' messages are
    # processed and kept, as a site must tell them); empty: no link.
    privacy_url: str = ""
    demo: bool = field(default=False)

    def validate(self) -> "Site":
        for origin in self.origins:
            if not ORIGIN.match(origin):
                raise SiteError(
                    f"origin {origin!r} must look like https://shop.example or "
                    "http://127.0.0.1:8080 (scheme, host, optional port; no path)"
                )
        if self.privacy_url and not LINK.match(self.privacy_url):
            raise SiteError(
                f"privacy_url {self.privacy_url!r} must be a web address such as "
                "https://shop.example/privacy"
            )
        if not COLOUR.match(self.colour):
            raise SiteError(f"colour {self.colour!r} must be #rgb or #rrggbb")
        if not self.name.strip():
            raise SiteError("name must not be empty")
        return self

    def allows(self, origin: str | None) -> bool:
        """Calls without an Origin header (servers, curl) need only the key."""
        return origin is None or origin in self.origins


class SiteRegistry:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._key = f"{prefix}:sites"

    async def add(self, name: str, origins: list[str], **style: str) -> Site:
        site = Site(key=f"pk_{secrets.token_urlsafe(18)}", name=name, origins=tuple(origins))
        return await self.put(replace(site, **style))  # type: ignore[arg-type]

    async def put(self, site: Site) -> Site:
        site.validate()
        await self._redis.hset(self._key, site.key, json.dumps(asdict(site)))
        return site

    async def get(self, key: str) -> Site | None:
        raw = await self._redis.hget(self._key, key)
        return _site(raw) if raw else None

    async def all(self) -> list[Site]:
        return sorted(
            (_site(v) for v in (await self._redis.hgetall(self._key)).values()),
            key=lambda s: s.name,
        )

    async def remove(self, key: str) -> bool:
        return bool(await self._redis.hdel(self._key, key))


def _site(raw: bytes | str) -> Site:
    data = json.loads(raw)
    data["origins"] = tuple(data.get("origins", ()))
    return Site(**data)
