"""The shared fixtures themselves work on every backend."""

from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.models import Article, User, utcnow


async def test_select_one(session: AsyncSession) -> None:
    assert await session.scalar(text("SELECT 1")) == 1


async def test_fresh_tables_exist_and_are_empty(engine: AsyncEngine, tables: None) -> None:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync_conn: inspect(sync_conn).get_table_names())
        assert {"users", "articles"} <= set(names)
        assert await conn.scalar(text("SELECT COUNT(*) FROM users")) == 0


async def test_model_defaults_round_trip(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    before = utcnow()
    async with session_factory() as session, session.begin():
        session.add_all([User(name="Ada", email="ada@example.com"), Article(title="T")])
    async with session_factory() as session:
        user = await session.scalar(select(User))
        article = await session.scalar(select(Article))
    assert user is not None
    assert article is not None
    assert (user.is_active, user.bonus_eligible, article.published) == (True, False, False)
    # Fails if the column drops microseconds (MariaDB DATETIME without fsp) or is not naive UTC.
    assert before <= user.created_at <= utcnow()
    assert user.updated_at is None


async def test_count_queries_sees_an_already_open_connection(
    session: AsyncSession, count_queries
) -> None:
    await session.execute(text("SELECT 1"))  # the session now holds a connection
    with count_queries() as log:
        await session.execute(text("SELECT 2"))
        await session.execute(select(User))
        async with session.begin_nested():
            await session.execute(text("SELECT 3"))
    # The SAVEPOINT and its RELEASE are recorded but not counted.
    assert (log.count, len(log.statements)) == (3, 5), log.statements
