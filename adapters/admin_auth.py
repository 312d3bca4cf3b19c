"""Bearer-token auth for the operator API; no token configured means the API is disabled."""

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer


def operator_auth(token: str | None) -> Any:
    """A FastAPI dependency: 403 when the operator API is disabled, 401 for a wrong token."""
    bearer = HTTPBearer(auto_error=False)

    async def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if not token:
            raise HTTPException(
                403, "The operator API is disabled; set ANSWERDESK_ADMIN_TOKEN to enable it."
            )
        given = credentials.credentials if credentials else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                401, "Missing or wrong bearer token.", headers={"WWW-Authenticate": "Bearer"}
            )

    check: Callable[..., Awaitable[None]] = authorized
    return Depends(check)
