"""baserepo's errors as HTTP responses, registered once for the whole app.

| error | status | body names |
| --- | --- | --- |
| InvalidFilterError | 422 | the query parameter (``loc: ["query", key]``) |
| RecordValidationError | 422 | each field at fault (``loc: ["body", field]``) |
| IntegrityConflictError | 409 | the constraint, in the database's own words |
| DatabaseUnavailableError | 503 | nothing of the database (it is logged) |

422 bodies have the shape of FastAPI's own validation errors, so a client reads one shape.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from baserepo import (
    DatabaseUnavailableError,
    IntegrityConflictError,
    InvalidFilterError,
    RecordValidationError,
)

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

__all__ = ["install_error_handlers"]

logger = logging.getLogger("fastapi_app")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidFilterError)
    async def invalid_filter(request: Request, exc: InvalidFilterError) -> JSONResponse:
        # FastAPI checked the type of each whitelisted filter; the repository also checks
        # that the value fits its column (age__gt=10**30 on an INTEGER column).
        error = {"type": "invalid_filter", "loc": ["query", exc.key], "msg": str(exc)}
        return JSONResponse({"detail": [error]}, status_code=422)

    @app.exception_handler(RecordValidationError)
    async def invalid_record(request: Request, exc: RecordValidationError) -> JSONResponse:
        where: list[Any] = ["body"] if exc.index is None else ["body", exc.index]
        errors = [
            {"type": "invalid_record", "loc": [*where, field], "msg": why}
            for field, why in exc.problems.items()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(IntegrityConflictError)
    async def conflict(request: Request, exc: IntegrityConflictError) -> JSONResponse:
        # The database's message names the constraint and the key (PostgreSQL: "Key
        # (email)=(...) already exists"): the client's own values, nothing else.
        body = {"type": "conflict", "unique": exc.is_unique_violation, "msg": str(exc)}
        return JSONResponse({"detail": body}, status_code=409)

    @app.exception_handler(DatabaseUnavailableError)
    async def unavailable(request: Request, exc: DatabaseUnavailableError) -> JSONResponse:
        # The cause names hosts and ports: for the log, not for the client.
        logger.warning("database unavailable: %s", exc)
        body = {"type": "database_unavailable", "msg": "the database is unavailable, try again"}
        return JSONResponse({"detail": body}, status_code=503)
