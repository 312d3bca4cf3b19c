"""Bearer-token auth for the operator API: the owner's ANSWERDESK_ADMIN_TOKEN, or an operator's
own token (`answerdesk operators add NAME`). With neither configured the API is disabled."""

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from adapters.operators import OWNER, OperatorAccounts


def operator_auth(token: str | None) -> Any:
    """A FastAPI dependency: 403 when the operator API is disabled, 401 for a wrong token.
    It leaves who signed in on `request.state.operator`: the operator's name, or None for the
    owner's admin token (whose requests name the operator acting)."""
    bearer = HTTPBearer(auto_error=False)

    async def authorized(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        x_operator_name: Annotated[
            str | None,
            Header(
                max_length=300,
                description="With the admin token: who is at the keyboard, percent-encoded "
                "UTF-8 (the desk sends the name typed at sign-in); FAQ history records it.",
            ),
        ] = None,
    ) -> None:
        given = credentials.credentials if credentials else ""
        if token and secrets.compare_digest(given.encode(), token.encode()):
            request.state.operator = None
            request.state.named = " ".join(unquote(x_operator_name or "").split())[:64]
            return
        accounts: OperatorAccounts = request.app.state.runtime.operators
        name = await accounts.who(given) if given else None
        if name is not None:
            request.state.operator = name
            return
        if not token and not await accounts.exist():
            raise HTTPException(
                403,
                "The operator API is disabled; set ANSWERDESK_ADMIN_TOKEN or add an operator "
                "(answerdesk operators add NAME) to enable it.",
            )
        raise HTTPException(
            401, "Missing or wrong bearer token.", headers={"WWW-Authenticate": "Bearer"}
        )

    check: Callable[..., Awaitable[None]] = authorized
    return Depends(check)


def signed_in(request: Request) -> str:
    """Who signed this request in, as FAQ history records it: the operator, or `OWNER` (with
    the name of who is at the keyboard, when the request gives it)."""
    if request.state.operator is not None:
        return str(request.state.operator)
    named = getattr(request.state, "named", "")
    return f"{named} ({OWNER})" if named else OWNER


def owner_only(request: Request) -> None:
    """403 unless the request comes with the owner's admin token: operator accounts and sites
    are the owner's to change."""
    if request.state.operator is not None:
        raise HTTPException(
            403, "Only the owner's admin token (ANSWERDESK_ADMIN_TOKEN) may do this."
        )


def acting(request: Request, named: str | None) -> str:
    """Who acts in an operator request: the signed-in operator (a request may repeat their
    name), or with the owner's admin token the operator it names."""
    signed_in: str | None = request.state.operator
    if signed_in is None:
        if not named:
            raise HTTPException(
                422,
                "operator: say who is acting (customers see the name); the admin token "
                "belongs to no operator.",
            )
        return named
    if named and named != signed_in:
        raise HTTPException(
            403, f"This token is {signed_in}'s: it acts as {signed_in}, not as {named}."
        )
    return signed_in
