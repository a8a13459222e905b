"""Events are typed by their model (and its key, where mypy can read it).

``# R: <type>``: what mypy must reveal on that line; ``# E: <code>``: the error it must report.
"""

from typing import reveal_type

from baserepo import EventBus, EventHandler, EventType, RepositoryEvent
from baserepo.testing import RecordingEventBus
from tests.models import Article, User


async def on_user(event: RepositoryEvent[User]) -> None:
    reveal_type(event.model)  # R: type[tests.models.User]
    reveal_type(event.ids)  # R: tuple[Any, ...]


async def on_user_keyed(event: RepositoryEvent[User, int]) -> None:
    reveal_type(event.ids)  # R: tuple[int, ...]


async def on_any(event: RepositoryEvent) -> None:
    reveal_type(event)  # R: baserepo._events.RepositoryEvent[Any, Any]


async def on_every_model(event: RepositoryEvent[object, object]) -> None:
    pass


async def on_article(event: RepositoryEvent[Article]) -> None:
    pass


async def on_user_by_name(event: RepositoryEvent[User, str]) -> None:
    pass


def subscriptions(bus: EventBus) -> None:
    bus.subscribe(EventType.CREATED, on_user, model=User)
    bus.subscribe(EventType.CREATED, on_user_keyed, model=User)
    bus.subscribe(EventType.CREATED, on_any, model=User)
    bus.subscribe(EventType.CREATED, on_any)
    bus.subscribe(EventType.CREATED, on_every_model)
    bus.subscribe(EventType.CREATED, on_every_model, model=Article)
    # A handler of one model's events, subscribed to another model or to every model:
    bus.subscribe(EventType.CREATED, on_article, model=User)  # E: arg-type
    bus.subscribe(EventType.CREATED, on_user)  # E: arg-type
    # Not caught (docs/typing.md): the overload for models whose key mypy cannot read also
    # takes User, with ids Any.
    bus.subscribe(EventType.CREATED, on_user_by_name, model=User)


def handlers() -> None:
    handler: EventHandler[User, int] = on_user_keyed
    every: EventHandler = on_any
    # R: def (baserepo._events.RepositoryEvent[tests.models.User, int]) -> typing.Awaitable[None]
    reveal_type(handler)
    # R: def (baserepo._events.RepositoryEvent[Any, Any]) -> typing.Awaitable[None]
    reveal_type(every)


def recorded(bus: RecordingEventBus) -> None:
    # R: list[baserepo._events.RepositoryEvent[tests.models.User, Any]]
    reveal_type(bus.of(EventType.CREATED, User))
    reveal_type(bus.of(EventType.CREATED))  # R: list[baserepo._events.RepositoryEvent[Any, Any]]
    reveal_type(bus.ids(EventType.CREATED, User))  # R: list[Any]
