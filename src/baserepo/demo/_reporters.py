"""Where the demo's narration goes: plain ``print``, or rich rules, tables and progress bars.

rich is optional (the ``cli`` extra) and imported only here.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from contextlib import AbstractContextManager

    from rich.console import Console

__all__ = ["PlainReporter", "Reporter", "RichReporter", "make_reporter"]


class Reporter(Protocol):
    """Where the demo's narration goes (plain text here, rich tables in the CLI)."""

    def section(self, title: str) -> None: ...

    def say(self, message: str) -> None: ...

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None: ...

    def progress(
        self, description: str, total: int
    ) -> AbstractContextManager[Callable[[int], None]]:
        """A context manager yielding ``update(done)``, called with the records handled so far."""
        ...


class PlainReporter:
    """Narration with ``print`` only, for machines without rich."""

    def section(self, title: str) -> None:
        print(f"\n== {title} ==")

    def say(self, message: str) -> None:
        print(message)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        cells = [[str(c) for c in columns], *([_shorten(str(c), 100) for c in row] for row in rows)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        print(title)
        for number, row in enumerate(cells):
            padded = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            print("  " + "  ".join(padded).rstrip())
            if number == 0:
                print("  " + "  ".join("-" * width for width in widths))

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        shown = -1

        def update(done: int) -> None:
            nonlocal shown
            tenth = done * 10 // max(total, 1)
            if tenth != shown:
                shown = tenth
                bar = "#" * tenth + "." * (10 - tenth)
                print(f"{description} [{bar}] {done:,}/{total:,}")

        yield update


class RichReporter:
    """The demo's narration as rich rules, tables and progress bars."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def section(self, title: str) -> None:
        self._console.rule(title, style="cyan")

    def say(self, message: str) -> None:
        # Messages quote user data ("[1, 2, 3]", emails): never read them as markup.
        self._console.print(message, markup=False)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(str(cell) for cell in row))
        self._console.print(table)

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self._console,
        ) as bar:
            task = bar.add_task(description, total=total)
            yield lambda done: bar.update(task, completed=done)


def make_reporter(plain: bool = False) -> Reporter:
    """rich output when rich is installed and ``plain`` is off, else plain text."""
    if not plain:
        try:
            from rich.console import Console
        except ImportError:
            pass
        else:
            return RichReporter(Console())
    return PlainReporter()


def _shorten(message: str, width: int) -> str:
    return message if len(message) <= width else message[: width - 3] + "..."
