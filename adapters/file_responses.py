"""Photos and files of a conversation over HTTP (`bot.files`): how they are uploaded (the request
body, as it is) and served back, to operators and to the conversation's customer."""

from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Response

from bot import StoredFile

KINDS = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf")
UPLOAD: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {kind: {"schema": {"type": "string", "format": "binary"}} for kind in KINDS},
    }
}
DOWNLOAD: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/*": {}, "application/pdf": {}}}
}
FILE_ID = "^[0-9a-f]{32}$"


def served(stored: StoredFile | None) -> Response:
    """An image to show, a PDF to download; never run or sniffed as anything else (a page of
    its own could otherwise run what an uploader put in it), never cached by the way."""
    if stored is None:
        raise HTTPException(404, "No such file in this conversation (deleted or expired).")
    shown = "inline" if stored.kind == "image" else "attachment"
    return Response(
        stored.data,
        media_type=stored.type,
        headers={
            "Content-Disposition": f"{shown}; filename*=UTF-8''{quote(stored.name)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        },
    )
