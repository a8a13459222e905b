"""Every example of docs/guide.md, run in order as the one program the guide says they are,
on a fresh SQLite file with the in-process cache; what each example prints must match the
``text`` block that follows it in the guide (``...`` stands for anything within a line).

The guide's examples are written for a reader (``python -m asyncio`` accepts their top-level
``await``); this test compiles each block the same way, with
``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT``. The spec the guide was adapted from keeps its own tests
(``test_cache_guide.py`` and the ``test_guide_*`` tests of the bulk modules).
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"
GUIDE_URL = "sqlite+aiosqlite:///guide.sqlite3"
"""The URL the guide's setup names; the test points it at a file of its own."""
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass
class Example:
    line: int
    code: str
    expected: str | None
    """What the example prints, from the ``text`` block right after it (None: not shown)."""


def examples(text: str) -> list[Example]:
    """The guide's ``python`` blocks, each with the ``text`` block that directly follows."""
    found: list[Example] = []
    previous_end = -1
    for fence in FENCE.finditer(text):
        language, body = fence.group(1), fence.group(2)
        between = text[previous_end : fence.start()] if previous_end >= 0 else "x"
        if language == "python":
            line = text.count("\n", 0, fence.start()) + 2
            found.append(Example(line, body, None))
        elif language == "text" and found and found[-1].expected is None and not between.strip():
            found[-1].expected = body
        previous_end = fence.end()
    return found


def matches(printed: str, expected: str) -> bool:
    """``printed`` line by line against ``expected``, where ``...`` matches any text."""
    got, want = printed.rstrip("\n").split("\n"), expected.rstrip("\n").split("\n")
    patterns = [re.compile(".*".join(map(re.escape, line.split("...")))) for line in want]
    return len(got) == len(want) and all(
        p.fullmatch(line) for p, line in zip(patterns, got, strict=True)
    )


def test_the_guide_has_examples_with_their_output() -> None:
    # A guard on the parser: if the fences were not found, the test below would prove nothing.
    found = examples(GUIDE.read_text())
    assert len(found) >= 20
    assert sum(example.expected is not None for example in found) >= 15
    assert GUIDE_URL in found[0].code
    assert all("from src." not in example.code for example in found)


async def test_every_example_of_the_guide_runs_and_prints_what_it_shows(tmp_path: Path) -> None:
    namespace: dict[str, object] = {"__name__": "guide"}
    url = f"sqlite+aiosqlite:///{tmp_path / 'guide.sqlite3'}"
    for example in examples(GUIDE.read_text()):
        code = compile(
            example.code.replace(GUIDE_URL, url),
            f"docs/guide.md:{example.line}",
            "exec",
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            dont_inherit=True,  # not this module's `from __future__ import annotations`
        )
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            pending = eval(code, namespace)  # a coroutine when the block awaits
            if pending is not None:
                await pending
        if example.expected is not None:
            assert matches(printed.getvalue(), example.expected), (
                f"docs/guide.md:{example.line} printed:\n{printed.getvalue()}"
                f"the guide shows:\n{example.expected}"
            )
