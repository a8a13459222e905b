"""What ``bench/harness/harness.py`` prints and writes: tables, the issue's bars, JSON and the
chart."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

LIMITS = {
    "postgresql": ("copy", "COPY"),
    "sqlite": ("aiosqlite_executemany", "execmany"),
    "mariadb": ("asyncmy_executemany", "execmany"),
}
"""Per database, the method every other one is divided by, and its short name."""
BAR_SIZES = (10_000, 100_000)
CREATE_BARS = {
    "postgresql": [
        ("bulk_create", "copy", 0.65),
        ("bulk_create", "advanced_alchemy", 8.0),
        ("bulk_create", "django", 4.0),
        ("bulk_create", "create_loop", 100.0),
        ("bulk_create_events", "copy", 0.5),
        ("bulk_create_ignore", "copy", 0.5),
    ],
    "sqlite": [("bulk_create", "aiosqlite_executemany", 0.5)],
    "mariadb": [
        ("bulk_create", "sa_add_all", 3.0),
        ("bulk_create", "asyncmy_executemany", 0.5),
    ],
}
"""(numerator, denominator, minimum ratio of rows/s), judged at each of ``BAR_SIZES``."""
CHANGE_BARS = [
    ("bulk_update", "core_update", 0.8),
    ("bulk_soft_delete", "core_soft_delete", 0.8),
    ("bulk_hard_delete", "core_delete", 0.8),
]
SIZE_COLOURS = ("#9ecae1", "#4292c6", "#08306b", "#6baed6", "#2171b5")
MEMORY_LIMIT_MB = 100.0
MEMORY_OVER_SMALL = 1.10
PACKAGES = (
    "baserepo",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "asyncmy",
    "advanced-alchemy",
    "django",
    "psycopg",
    "tortoise-orm",
    "matplotlib",
)


@dataclass
class Measurement:
    database: str
    section: str
    """``create`` (inserts) or ``change`` (bulk_update / bulk_delete)."""
    method: str
    label: str
    rows: int
    """The size being measured (rows inserted, or rows in the table changed)."""
    ids: bool
    ours: bool
    note: str = ""
    timed_rows: int = 0
    """Rows the clock ran for: ``rows``, a create-loop sample, or the rows a filter touched."""
    seconds: list[float] = field(default_factory=list)
    ids_in_order: bool | None = None
    """Whether each returned id was checked to be its own input row's (None: not checked)."""

    @property
    def rows_per_second(self) -> float:
        return self.timed_rows / statistics.median(self.seconds)

    def as_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "section": self.section,
            "method": self.method,
            "label": self.label,
            "rows": self.rows,
            "timed_rows": self.timed_rows,
            "returns_ids": self.ids,
            "ids_in_input_order": self.ids_in_order,
            "baserepo": self.ours,
            "median_seconds": round(statistics.median(self.seconds), 6),
            "rows_per_second": round(self.rows_per_second),
            "seconds": [round(s, 6) for s in self.seconds],
            "spread": round(
                (max(self.seconds) - min(self.seconds)) / statistics.median(self.seconds), 3
            ),
            "note": self.note,
        }


class Index:
    def __init__(self, measurements: list[Measurement]) -> None:
        self.by_key = {(m.database, m.section, m.method, m.rows): m for m in measurements}

    def get(self, database: str, section: str, method: str, rows: int) -> Measurement | None:
        return self.by_key.get((database, section, method, rows))

    def ratio(self, database: str, section: str, a: str, b: str, rows: int) -> float | None:
        top, bottom = (self.get(database, section, m, rows) for m in (a, b))
        if top is None or bottom is None:
            return None
        return top.rows_per_second / bottom.rows_per_second


def judge_bars(run: Any, index: Index) -> list[dict[str, Any]]:
    bars: list[dict[str, Any]] = []
    for database, rules in CREATE_BARS.items():
        for rows in BAR_SIZES:
            for top, bottom, minimum in rules:
                value = index.ratio(database, "create", top, bottom, rows)
                if value is not None:
                    bars.append(
                        _bar(f"{database} {rows:,}: {top} / {bottom}", value, ">=", minimum)
                    )
    for database, section, rows in sorted(
        {(m.database, m.section, m.rows) for m in run.measurements}
    ):
        if section != "change":
            continue
        for top, bottom, minimum in CHANGE_BARS:
            value = index.ratio(database, section, top, bottom, rows)
            if value is not None:
                label = f"{database} {rows:,}-row table: {top} / {bottom}"
                bars.append(_bar(label, value, ">=", minimum))
    memory = {probe["rows"]: probe for probe in run.memory}
    big, small = memory.get(1_000_000), memory.get(100_000)
    if big is not None:
        bars.append(
            _bar(
                "memory: peak RSS growth of a 1,000,000-row bulk_create",
                big["growth_mb"],
                "<=",
                MEMORY_LIMIT_MB,
                unit=" MB",
            )
        )
        if small is not None:
            allowed = small["growth_mb"] * MEMORY_OVER_SMALL
            bars.append(
                _bar(
                    f"memory: growth 1,000,000 rows / 100,000 rows ({big['growth_mb']} / "
                    f"{small['growth_mb']} MB)",
                    big["growth_mb"] / small["growth_mb"]
                    if small["growth_mb"] > 0
                    else float("inf"),
                    "<=",
                    MEMORY_OVER_SMALL,
                    detail=f"allowed {allowed:.1f} MB; created_ids alone "
                    f"{big['created_ids_mb']} / {small['created_ids_mb']} MB",
                )
            )
    return bars


def _bar(
    name: str, value: float, comparison: str, bound: float, detail: str = "", unit: str = "x"
) -> dict[str, Any]:
    passed = value >= bound if comparison == ">=" else value <= bound
    return {
        "bar": name,
        "value": round(value, 3),
        "unit": unit,
        "comparison": comparison,
        "bound": bound,
        "pass": passed,
        "detail": detail,
    }


# -- tables --------------------------------------------------------------------------------


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _times(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.4f}x"


def create_table(run: Any, index: Index, database: str) -> tuple[str, list[str], list[list[str]]]:
    found = [m for m in run.measurements if m.database == database and m.section == "create"]
    sizes = sorted({m.rows for m in found})
    methods = list(dict.fromkeys(m.method for m in found))
    limit, limit_name = LIMITS[database]
    header = ["method", "ids"]
    for size in sizes:
        short = f"{size // 1000:,}k" if size % 1000 == 0 else f"{size:,}"
        header += [f"{short} rows/s", f"x {limit_name}", "bulk/this"]
    body = []
    for method in methods:
        first = next(m for m in found if m.method == method)
        sampled = first.timed_rows < first.rows or any(
            m.timed_rows < m.rows for m in found if m.method == method
        )
        line = [first.label + (" *" if sampled else ""), "yes" if first.ids else "no"]
        for size in sizes:
            m = index.get(database, "create", method, size)
            if m is None:
                line += ["-", "-", "-"]
                continue
            line.append(_rate(m.rows_per_second))
            line.append(_times(index.ratio(database, "create", method, limit, size)))
            versus = (
                None
                if method.startswith("bulk_create")
                else index.ratio(database, "create", "bulk_create", method, size)
            )
            line.append(_times(versus))
        body.append(line)
    title = f"{database}: inserts, rows/s (median of {run.args.repeat} runs)"
    return title, header, body


def change_table(run: Any, index: Index) -> tuple[str, list[str], list[list[str]]] | None:
    found = [m for m in run.measurements if m.section == "change"]
    if not found:
        return None
    header = [
        "operation (rows changed)",
        "baserepo rows/s",
        "Core statement rows/s",
        "baserepo / Core",
    ]
    body = []
    for top, bottom, _ in CHANGE_BARS:
        for database, rows in sorted({(m.database, m.rows) for m in found}):
            ours, core = (
                index.get(database, "change", top, rows),
                index.get(database, "change", bottom, rows),
            )
            if ours is None or core is None:
                continue
            body.append(
                [
                    f"{ours.label} ({ours.timed_rows:,})",
                    _rate(ours.rows_per_second),
                    _rate(core.rows_per_second),
                    _times(ours.rows_per_second / core.rows_per_second),
                ]
            )
    rows = found[0].rows
    title = (
        f"postgresql: update/delete by filter, ~30% of a {rows:,}-row table "
        f"(median of {run.args.repeat} runs)"
    )
    return title, header, body


def memory_table(run: Any) -> tuple[str, list[str], list[list[str]]] | None:
    if not run.memory:
        return None
    header = [
        "streamed rows",
        "RSS before MB",
        "peak RSS MB",
        "growth MB",
        "created_ids MB",
        "seconds",
    ]
    body = [
        [
            f"{p['rows']:,}",
            f"{p['rss_before_mb']:.1f}",
            f"{p['peak_rss_mb']:.1f}",
            f"{p['growth_mb']:.1f}",
            f"{p['created_ids_mb']:.1f}",
            f"{p['seconds']:.2f}",
        ]
        for p in run.memory
    ]
    method = run.memory[0]["measured_with"]
    title = f"memory: bulk_create from an async generator, each in a fresh process ({method})"
    return title, header, body


def plain_table(title: str, header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [title]
    for number, row in enumerate([header, *body]):
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)),
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def print_table(title: str, header: list[str], body: list[list[str]], plain: bool) -> None:
    try:
        if plain:
            raise ImportError
        from rich import box
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print("\n".join(plain_table(title, header, body)))
        print()
        return
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for number, name in enumerate(header):
        table.add_column(name, justify="left" if number == 0 else "right", no_wrap=number == 0)
    for line in body:
        table.add_row(*line)
    # Piped output (a file, a CI log) is 80 columns to rich; these tables need more.
    console = Console(width=None if sys.stdout.isatty() else 200)
    with console.capture() as captured:
        console.print(table)
    print("\n".join(line.rstrip() for line in captured.get().splitlines()))


def notes(run: Any) -> list[str]:
    out = [
        f"median of {run.args.repeat} runs per figure; every run on a freshly created table with "
        "the same generated rows; method order rotated each run",
        "x COPY / x execmany: rows/s divided by the raw limit's; bulk/this: baserepo "
        "bulk_create's rows/s divided by this method's (> 1: baserepo is faster)",
    ]
    sampled = [m for m in run.measurements if m.timed_rows < m.rows and m.section == "create"]
    if sampled:
        out.append(
            f"* timed on a sample of {min(m.timed_rows for m in sampled):,} creates per run "
            "(one commit each; the rate does not depend on the table's size)"
        )
    out.append(
        "ids: whether the method hands back the new ids; every id handed back was checked to "
        "belong to its own input row"
    )
    out.append(
        "Django: a process of its own, timed there (bulk_create in transaction.atomic(), psycopg "
        "3); Tortoise: its bulk_create fills in no integer ids"
    )
    disorder = sorted({m.label for m in run.measurements if m.ids_in_order is False})
    if disorder:
        out.append(
            "ids NOT in input order (a valid id set, in another order): " + ", ".join(disorder)
        )
    return out


# -- chart ---------------------------------------------------------------------------------


def draw_chart(run: Any, index: Index, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [
        (d, "create")
        for d in LIMITS
        if any(m.database == d and m.section == "create" for m in run.measurements)
    ]
    panels += sorted({(m.database, "change") for m in run.measurements if m.section == "change"})
    if not panels:
        return False
    counts = [
        len({m.method for m in run.measurements if (m.database, m.section) == panel})
        for panel in panels
    ]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(11, 1.0 + 0.55 * sum(counts) + 1.0 * len(panels)),
        gridspec_kw={"height_ratios": counts},
        squeeze=False,
    )
    rates = [m.rows_per_second for m in run.measurements]
    # One x range for every panel, so that bar lengths compare across databases.
    x_range = (min(rates) / 2, max(rates) * 4)
    for ax, (database, section) in zip(axes[:, 0], panels, strict=True):
        found = [m for m in run.measurements if (m.database, m.section) == (database, section)]
        if section == "create":
            _create_panel(ax, run, index, database, found)
        else:
            _change_panel(ax, run, database, found)
        ax.set_xscale("log")
        ax.set_xlim(*x_range)
        ax.grid(axis="x", which="both", alpha=0.25)
        ax.set_axisbelow(True)
        ax.tick_params(axis="y", labelsize=8.5)
        for tick in ax.get_yticklabels():
            if tick.get_text().startswith("baserepo"):
                tick.set_fontweight("bold")
    servers = ", ".join(f"{k} {v}" for k, v in run.versions.items() if k in LIMITS)
    fig.suptitle(
        f"baserepo bench/harness/harness.py: {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {servers}; median of {run.args.repeat} runs; "
        "bold = baserepo",
        fontsize=10,
    )
    # One legend for every panel, under the title: the colours are the sizes everywhere.
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    sizes = sorted({m.rows for m in run.measurements if m.section == "create"})
    handles: list[Any] = [
        Patch(color=SIZE_COLOURS[k], label=f"{n:,} rows") for k, n in enumerate(sizes)
    ]
    handles.append(
        Line2D(
            [],
            [],
            color="#4292c6",
            linestyle="--",
            label="the limit at that size (asyncpg COPY; raw executemany on SQLite/MariaDB)",
        )
    )
    top = 1 - 0.75 / fig.get_figheight()
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=len(handles),
        fontsize=8,
        bbox_to_anchor=(0.5, top),
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, top - 0.2 / fig.get_figheight()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _create_panel(ax: Any, run: Any, index: Index, database: str, found: list[Measurement]) -> None:
    sizes = sorted({m.rows for m in run.measurements if m.section == "create"})
    colours = dict(zip(sizes, SIZE_COLOURS, strict=False))
    height = 0.8 / len(sizes)
    methods = list(dict.fromkeys(m.method for m in found))[::-1]
    labels = []
    for y, method in enumerate(methods):
        first = next(m for m in found if m.method == method)
        labels.append(first.label + ("" if first.ids else "  [no ids]"))
        for k, size in enumerate(sizes):
            m = index.get(database, "create", method, size)
            if m is None:
                continue
            offset = (k - (len(sizes) - 1) / 2) * height
            ax.barh(
                y - offset,
                m.rows_per_second,
                height=height * 0.92,
                color=colours[size],
            )
            text = f"{m.rows_per_second / 1000:,.1f}k"
            ax.text(m.rows_per_second * 1.05, y - offset, text, va="center", fontsize=7)
    limit, _ = LIMITS[database]
    limit_name = "asyncpg COPY, no ids" if database == "postgresql" else "raw executemany"
    for size in sizes:
        m = index.get(database, "create", limit, size)
        if m is not None:
            ax.axvline(
                m.rows_per_second,
                color=colours[size],
                linestyle="--",
                linewidth=1.3,
            )
    ax.set_yticks(range(len(methods)), labels)
    ax.set_xlabel("rows inserted per second (log scale)", fontsize=8.5)
    ax.set_title(
        f"{database}: inserts (dashed: {limit_name})", fontsize=9.5, loc="left", fontweight="bold"
    )


def _change_panel(ax: Any, run: Any, database: str, found: list[Measurement]) -> None:
    order = [name for pair in CHANGE_BARS for name in pair[:2]]
    ordered = sorted(found, key=lambda m: order.index(m.method) if m.method in order else 99)
    ordered = ordered[::-1]
    for y, m in enumerate(ordered):
        ax.barh(y, m.rows_per_second, height=0.7, color="#08306b" if m.ours else "#969696")
        text = f"{m.rows_per_second / 1000:,.1f}k"
        ax.text(m.rows_per_second * 1.05, y, text, va="center", fontsize=7)
    ax.set_yticks(range(len(ordered)), [m.label for m in ordered])
    ax.set_xlabel("rows changed per second (log scale)", fontsize=8.5)
    rows = found[0].rows
    ax.set_title(
        f"{database}: update / delete by filter, {found[0].timed_rows:,} of {rows:,} rows "
        "(grey = the single Core statement)",
        fontsize=9.5,
        loc="left",
        fontweight="bold",
    )


# -- everything ----------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def render_report(run: Any, elapsed: float) -> int:
    index = Index(run.measurements)
    plain = run.args.plain
    print()
    for database in ("postgresql", "sqlite", "mariadb"):
        if any(m.database == database and m.section == "create" for m in run.measurements):
            print_table(*create_table(run, index, database), plain)
    for table in (change_table(run, index), memory_table(run)):
        if table is not None:
            print_table(*table, plain)
    for line in notes(run):
        print(line)
    print()
    bars = judge_bars(run, index)
    for bar in bars:
        status = "PASS" if bar["pass"] else "FAIL"
        unit, detail = bar["unit"], f"; {bar['detail']}" if bar["detail"] else ""
        print(
            f"{status}  {bar['bar']}: {bar['value']:.2f}{unit} "
            f"(bar {bar['comparison']} {bar['bound']:g}{unit}{detail})"
        )
    for skipped in run.skipped:
        print(f"SKIPPED  {skipped}")
    passed = sum(b["pass"] for b in bars)
    print(f"bars: {passed} of {len(bars)} pass; the run took {elapsed:.0f}s")

    chart = draw_chart(run, index, run.args.chart)
    print(f"chart: {run.args.chart}" if chart else "chart: not drawn (matplotlib is not installed)")
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/harness/harness.py", *run.args.argv]),
        "elapsed_seconds": round(elapsed, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "servers": run.versions,
        "packages": _versions(),
        "settings": {
            "sizes": run.args.sizes,
            "repeat": run.args.repeat,
            "change_rows": run.args.change_rows,
            "create_loop_sample": run.args.create_loop_sample,
            "quick": run.args.quick,
            "databases": run.args.databases,
        },
        "measurements": [m.as_json() for m in run.measurements],
        "memory": run.memory,
        "bars": bars,
        "skipped": run.skipped,
        "chart": str(run.args.chart) if chart else None,
    }
    run.args.output.parent.mkdir(parents=True, exist_ok=True)
    run.args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {run.args.output}")
    return 1 if run.args.strict and passed < len(bars) else 0
