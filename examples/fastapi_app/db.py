"""The app's engine and cache, made once by the lifespan, and the per-request dependencies.

Who owns the transaction: the repository. The session dependency gives each request a
session of its own and closes it; it never commits. With no transaction of the caller's
open, each repository write (each batch of a bulk call) commits itself, and its cache
invalidation and events have run before the call returns, so before the response exists.
A commit in the dependency's exit code would instead run after FastAPI has sent the
response (the default scope of a ``yield`` dependency): the client could be told 201 for a
row whose commit then failed. docs/fastapi.md, "Who owns the transaction".
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baserepo import BaseRepository, CacheConfig, EventBus, create_engine

from .models import Base, User
from .schemas import UserCreate, UserUpdate
from .settings import Settings

__all__ = [
    "AppResources",
    "engine_options",
    "SessionDep",
    "UserRepository",
    "UsersDep",
    "get_session",
    "get_users",
    "open_resources",
]

UserRepository = BaseRepository[User, UserCreate, UserUpdate]


@dataclass(frozen=True, slots=True)
class AppResources:
    """What lives as long as the app: shared by every request, never per request."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cache: CacheConfig
    """One config for the whole app: it holds the cache's running state (breaker, stats)."""
    events: EventBus


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[AppResources]:
    """The engine, the cache and the event bus; all closed on exit."""
    # baserepo.create_engine: create_async_engine plus, on SQLite, the recipe that makes
    # SAVEPOINT work (a plain aiosqlite engine silently breaks it).
    engine = create_engine(settings.database_url, **engine_options(settings.database_url))
    redis: Any = None
    try:
        if settings.create_tables:
            async with engine.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
        if settings.redis_url:
            # Imported here: only an app given a Redis URL needs redis-py (baserepo[redis]).
            from redis.asyncio import Redis

            redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2)
        cache = CacheConfig(redis_client=redis, default_ttl=300, key_prefix=settings.cache_prefix)
        yield AppResources(
            engine=engine,
            # expire_on_commit=False: objects stay readable after the repository's commits
            # (an expired attribute would need lazy IO, which asyncio refuses).
            sessions=async_sessionmaker(engine, expire_on_commit=False),
            cache=cache,
            events=EventBus(),
        )
        # Cache fills run in the background after a miss: let them land before Redis closes.
        await cache.settle()
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


def engine_options(url: str) -> dict[str, Any]:
    """Pool settings for the database of ``url``."""
    if make_url(url).get_backend_name() == "sqlite" and make_url(url).database not in (
        None,
        "",
        ":memory:",
    ):
        # SQLite takes one writer at a time, and refuses at once ("database is locked", no
        # busy wait) a transaction that read before writing while another one writes: two
        # concurrent PATCH requests would fail. One connection makes requests take turns.
        return {"pool_size": 1, "max_overflow": 0}
    return {}


def resources(request: Request) -> AppResources:
    found: AppResources = request.app.state.resources
    return found


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request, closed at the end of it.

    Closing rolls back whatever is still open: a transaction a read began implicitly, or
    one left by an error or a cancellation. What the repository committed stays.
    """
    async with resources(request).sessions() as session:
        yield session


# scope="function": the session closes (its connection back in the pool) as soon as the
# endpoint has returned, not after the response has been sent to a slow client.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def get_users(request: Request, session: SessionDep) -> UserRepository:
    """The users repository of this request: its session, the app's cache and event bus."""
    app = resources(request)
    return UserRepository(User, session, app.cache, event_bus=app.events)


UsersDep = Annotated[UserRepository, Depends(get_users)]
