"""README.md's snippets, as a user would paste them into a ``mypy --strict`` project.

Every line marked ``# README`` must appear in README.md as written (test_typing.py checks it),
so the README cannot drift from what is type-checked here.
"""

from datetime import datetime
from typing import Any, reveal_type

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import (
    BaseRepository,
    BulkOperationResult,
    CacheConfig,
    CacheWarmingConfig,
    EventType,
    RepositoryEvent,
    default_event_bus,
)
from tests.models import User, UserCreate, UserUpdate


async def opening_example(
    session: AsyncSession, users_data: list[dict[str, Any]], cutoff: datetime
) -> None:
    repo = BaseRepository[User, UserCreate, UserUpdate](User, session)  # README
    result: BulkOperationResult[int] = await repo.bulk_create(users_data, batch_size=500)  # README
    print(result.success_count, result.error_count, result.created_ids)  # README
    engineers = await repo.list(department="engineering", salary__gte=50_000, limit=100)  # README
    reveal_type(engineers)  # R: list[tests.models.User]
    await repo.bulk_update({"last_login__lt": cutoff, "is_active": True}, {"is_active": False})  # README
    await repo.bulk_delete({"email__startswith": "test_"}, soft_delete=False)  # README


async def on_created(event: RepositoryEvent[User, int]) -> None:  # .type .model .ids .data .bulk  # README
    reveal_type(event.ids)  # R: tuple[int, ...]


async def events(session: AsyncSession) -> None:
    default_event_bus.subscribe(EventType.CREATED, on_created, model=User)  # README
    repo = BaseRepository(User, session)  # or event_bus=EventBus() for a private bus  # README
    reveal_type(await repo.get(1))  # R: tests.models.User | None


async def query_cache(session: AsyncSession, redis_client: Redis) -> None:
    cache_config = CacheConfig(  # README
        redis_client=redis_client, default_ttl=600, warming_config=CacheWarmingConfig(enabled=True)  # README
    )  # README
    repo = BaseRepository(User, session, cache_config)  # share one config app-wide  # README
    users = await repo.list(limit=100, is_active=True)  # cached: get, get_many, list, page, count  # README
    reveal_type(users)  # R: list[tests.models.User]
    await repo.invalidate_cache("list:*")  # writes invalidate by themselves  # README
    await repo.warm_cache()  # replay the popular queries  # README
    print(cache_config.stats().hit_ratio)  # README
