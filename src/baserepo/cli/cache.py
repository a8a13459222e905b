"""``baserepo cache stats|warm|invalidate MODULE:CLASS``: a model's query cache in Redis,
seen and handled from outside the application.

Everything goes through the public cache API (``baserepo.cache``: ``inspect_cache``,
``warm_model``, ``invalidate_model``); nothing here speaks to Redis itself. Each failure is one
line on stderr and an exit status of ``_status``, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import async_sessionmaker

from .. import create_engine, demo
from ..cache import (
    CacheConfig,
    CacheWarmingConfig,
    inspect_cache,
    invalidate_model,
    warm_model,
)
from ..cache.connect import connect_redis, redact, unavailable
from ..exceptions import ConfigurationError
from ._cache_output import (
    WarmProgress,
    print_json,
    show_inspection,
    show_invalidation,
    show_warm,
)
from ._models import ModelNotFound, load_model
from ._status import (
    DATABASE_UNAVAILABLE,
    EXIT_CODES_HELP,
    FAILED,
    INTERRUPTED,
    MODEL_NOT_FOUND,
    OK,
    REDIS_UNAVAILABLE,
    USAGE,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["add_cache_command", "run_cache"]

_DEFAULTS = CacheWarmingConfig()
_DEFAULT_TTL = 600.0


class _Failure(Exception):
    """Ends a command with ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def _factor(value: str) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError("must be above 0 and at most 1")
    return number


def add_cache_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    cache = commands.add_parser(
        "cache",
        help="show, warm or invalidate a model's query cache in Redis",
        description="Show, warm or invalidate the query cache of one model, in the Redis "
        "every process of the application shares (docs/cache.md, 'Command line').",
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
    )
    actions = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "model",
        metavar="MODULE:CLASS",
        help="the SQLAlchemy model, e.g. myapp.models:User (imported from --app-dir)",
    )
    common.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="the application's Redis, e.g. redis://127.0.0.1:6379/0 (default: "
        "$BASEREPO_REDIS_URL)",
    )
    common.add_argument(
        "--key-prefix",
        default="baserepo",
        metavar="PREFIX",
        help="the application's CacheConfig(key_prefix=...) (default: baserepo)",
    )
    common.add_argument(
        "--app-dir",
        default=".",
        metavar="DIR",
        help="directory put first on sys.path to import the model (default: .)",
    )
    common.add_argument(
        "--timeout",
        type=_positive,
        default=10.0,
        metavar="SECONDS",
        help="how long one Redis command may take (default: 10)",
    )
    common.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout and nothing else"
    )
    common.add_argument("--plain", action="store_true", help="plain text even if rich is here")

    # What the application's CacheWarmingConfig says; stats marks the queries a warm replays.
    warming = argparse.ArgumentParser(add_help=False)
    warming.add_argument(
        "--limit",
        type=_count,
        default=_DEFAULTS.popular_queries_limit,
        metavar="N",
        help=f"popular_queries_limit (default: {_DEFAULTS.popular_queries_limit})",
    )
    warming.add_argument(
        "--min-uses",
        type=float,
        default=_DEFAULTS.min_usage_count,
        metavar="N",
        help=f"min_usage_count (default: {_DEFAULTS.min_usage_count})",
    )

    stats = actions.add_parser(
        "stats",
        parents=[common, warming],
        help="what Redis holds for the model: generation, entries, write intents, popular queries",
        description="Show what Redis holds for the model: its generation (and the server run "
        "it was moved under), entries (current, stale, per kind, memory), write intents in "
        "flight, fill leases, and the popular queries with their scores. Hit and miss counts "
        "are per application process (cache_config.stats()), not in Redis.",
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
    )
    stats.add_argument(
        "--top",
        type=_count,
        default=20,
        metavar="N",
        help="popular queries to list (default: 20)",
    )

    warm = actions.add_parser(
        "warm",
        parents=[common, warming],
        help="replay the model's popular queries now, as repo.warm_cache() does",
        description="Replay the model's popular queries (the fleet-wide ranking in Redis) "
        "against the database, each in a session of its own, and store their results, as "
        "repo.warm_cache() does. Scores are then aged by --decay-factor, as at every warm.",
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
    )
    warm.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="the application's database, an async SQLAlchemy URL (default: "
        "$BASEREPO_DATABASE_URL)",
    )
    warm.add_argument(
        "--ttl",
        type=_positive,
        default=_DEFAULT_TTL,
        metavar="SECONDS",
        help=f"CacheConfig(default_ttl=...) of the warmed entries (default: {_DEFAULT_TTL:g})",
    )
    warm.add_argument(
        "--decay-factor",
        type=_factor,
        default=_DEFAULTS.decay_factor,
        metavar="F",
        help=f"decay_factor; 1 leaves the scores as they are (default: {_DEFAULTS.decay_factor})",
    )

    invalidate = actions.add_parser(
        "invalidate",
        parents=[common],
        help="retire the model's cached queries, as repo.invalidate_cache() does",
        description="Delete the model's entries matching --pattern, then move its generation: "
        "every process reads each cached query of the model from the database on its next use "
        "(repo.invalidate_cache(pattern)). For changes made behind the repositories' back.",
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
    )
    invalidate.add_argument(
        "--pattern",
        default="*",
        metavar="GLOB",
        help='entries to delete at once, relative to the model: "*", "list:*", "get:*" '
        "(default: *); the generation moves whatever the pattern",
    )


def run_cache(args: argparse.Namespace) -> int:
    command = f"baserepo cache {args.cache_command}"
    try:
        redis_url = _setting(args.redis_url, "BASEREPO_REDIS_URL", "--redis-url")
        database_url = None
        if args.cache_command == "warm":
            database_url = _setting(args.database_url, "BASEREPO_DATABASE_URL", "--database-url")
        try:
            model = load_model(args.model, args.app_dir)
        except ModelNotFound as error:
            raise _Failure(MODEL_NOT_FOUND, str(error)) from None
        with _library_logs_silenced():
            return asyncio.run(_run(args, model, redis_url, database_url))
    except KeyboardInterrupt:
        return INTERRUPTED
    except _Failure as failure:
        print(f"{command}: {failure.message}", file=sys.stderr)
        return failure.status


def _setting(given: str | None, variable: str, option: str) -> str:
    value = given or os.environ.get(variable)
    if not value:
        raise _Failure(USAGE, f"no URL: pass {option} or set ${variable}")
    return value


@contextlib.contextmanager
def _library_logs_silenced() -> Iterator[None]:
    # The library logs a failed replay with its traceback; here each failure is reported
    # once, in the command's own output. An application's logging setup is not ours to
    # change, so this only lasts while the command runs.
    logger = logging.getLogger("baserepo")
    propagate = logger.propagate
    logger.propagate = False
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


async def _run(
    args: argparse.Namespace, model: type[Any], redis_url: str, database_url: str | None
) -> int:
    client = await _connect(redis_url, args.timeout)
    config = CacheConfig(
        client,
        default_ttl=getattr(args, "ttl", _DEFAULT_TTL),
        key_prefix=args.key_prefix,
        operation_timeout=args.timeout,
        warming_config=CacheWarmingConfig(
            enabled=True,
            popular_queries_limit=getattr(args, "limit", _DEFAULTS.popular_queries_limit),
            min_usage_count=getattr(args, "min_uses", _DEFAULTS.min_usage_count),
            decay_factor=getattr(args, "decay_factor", _DEFAULTS.decay_factor),
        ),
    )
    reporter = None if args.json else demo.make_reporter(args.plain)
    try:
        if args.cache_command == "stats":
            inspection = await inspect_cache(config, model, popular_limit=args.top)
            if reporter is None:
                print_json({"class": args.model, **inspection.as_dict()})
            else:
                show_inspection(reporter, inspection, args.model, redact(redis_url))
            return OK
        if args.cache_command == "invalidate":
            try:
                invalidation = await invalidate_model(config, model, args.pattern)
            except ValueError as error:
                raise _Failure(USAGE, str(error)) from None
            if reporter is None:
                print_json({"class": args.model, **vars(invalidation)})
            else:
                show_invalidation(reporter, invalidation)
            return OK
        assert database_url is not None
        return await _warm(config, model, database_url, reporter, args)
    except _Failure:
        raise
    except ConfigurationError as error:
        raise _Failure(MODEL_NOT_FOUND, f"{args.model}: {error}") from None
    except Exception as error:
        if unavailable(error):
            raise _Failure(
                REDIS_UNAVAILABLE, f"Redis unreachable at {redact(redis_url)}: {_line(error)}"
            ) from None
        raise _Failure(FAILED, _line(error)) from None
    finally:
        await client.aclose()


async def _connect(url: str, seconds: float) -> Any:
    try:
        return await connect_redis(url, connect_timeout=seconds, socket_timeout=seconds)
    except ConfigurationError as error:  # redis-py missing
        raise _Failure(USAGE, str(error)) from None
    except ValueError as error:  # redis-py's verdict on the URL (scheme, port...)
        raise _Failure(USAGE, f"bad Redis URL {redact(url)}: {_line(error)}") from None
    except ConnectionError as error:
        raise _Failure(REDIS_UNAVAILABLE, _line(error)) from None


async def _warm(
    config: CacheConfig,
    model: type[Any],
    database_url: str,
    reporter: demo.Reporter | None,
    args: argparse.Namespace,
) -> int:
    where = redact(database_url)
    try:
        engine = create_engine(database_url)
    except (ArgumentError, ImportError) as error:  # unparsable URL, driver not installed
        raise _Failure(USAGE, f"bad database URL {where}: {_line(error)}") from None
    try:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as error:
            raise _Failure(
                DATABASE_UNAVAILABLE, f"database unreachable at {where}: {_line(error)}"
            ) from None
        progress = WarmProgress(reporter, model.__name__)
        try:
            session_factory = async_sessionmaker(engine, expire_on_commit=False)
            report = await warm_model(config, session_factory, model, progress)
        finally:
            progress.close()
    finally:
        await engine.dispose()
    if reporter is None:
        print_json({"class": args.model, **progress.as_dict(report)})
    else:
        show_warm(reporter, report, progress)
    return FAILED if report.failed else OK


def _line(error: BaseException) -> str:
    """The first line of an error's message (SQLAlchemy's run to several), or its type."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
