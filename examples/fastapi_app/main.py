"""The app factory and its lifespan: ``uvicorn examples.fastapi_app.main:app``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .db import open_resources
from .errors import install_error_handlers
from .routes import router
from .settings import Settings

__all__ = ["app", "create_app", "lifespan"]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Engine and cache for the app's lifetime: made at startup, disposed at shutdown."""
    settings: Settings = app.state.settings
    async with open_resources(settings) as resources:
        app.state.resources = resources
        yield


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="baserepo + FastAPI", lifespan=lifespan)
    app.state.settings = settings if settings is not None else Settings.from_env()
    install_error_handlers(app)
    app.include_router(router)
    return app


app = create_app()
