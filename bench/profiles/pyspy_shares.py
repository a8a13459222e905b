"""Where a bulk call's time goes, from a py-spy raw profile (``py-spy record -f raw``): the
share of the samples under ``BaseRepository.<method>`` spent in each of the frames below it
that belong to baserepo, SQLAlchemy, asyncpg, asyncmy or aiosqlite (inclusive), biggest first.

    .venv/bin/python bench/profiles/pyspy_shares.py /tmp/profile.txt bulk_create [--top 25]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

LIBRARIES = ("baserepo", "sqlalchemy", "asyncpg", "asyncmy", "aiosqlite")


def shares(profile: Path, method: str) -> tuple[int, Counter[str]]:
    root = f"BaseRepository.{method} "
    total = 0
    inclusive: Counter[str] = Counter()
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        starts = [i for i, frame in enumerate(frames) if frame.startswith(root)]
        if not starts:
            continue
        samples = int(count)
        total += samples
        seen: set[str] = set()
        for frame in frames[starts[0] + 1 :]:
            name, _, where = frame.partition(" (")
            if not any(library in where for library in LIBRARIES):
                continue
            label = f"{name} ({where.rsplit('/', 1)[-1]}"
            if label not in seen:
                seen.add(label)
                inclusive[label] += samples
    return total, inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("method", help="bulk_create, bulk_update or bulk_delete")
    parser.add_argument("--top", type=int, default=25)
    arguments = parser.parse_args()
    total, inclusive = shares(arguments.profile, arguments.method)
    print(f"{total} samples under BaseRepository.{arguments.method}")
    for label, samples in inclusive.most_common(arguments.top):
        print(f"{samples / total:6.1%}  {label}")


if __name__ == "__main__":
    main()
