"""What a user's type checker sees: mypy --strict on the sample files in ``samples/``.

Each sample states its expected mypy output in comments, on the line concerned or alone on the
line before it:

- ``# R: <type>``: mypy must reveal exactly ``<type>`` there (a ``reveal_type`` call);
- ``# E: <code>``: mypy must report an error with that code there.

Every expectation must be met and nothing else may be reported, so a sample fails both when an
inference degrades (``list[Any]`` where ``list[int]`` was expected) and when a mistake stops
being caught. mypy runs once for all samples, with its cache kept in pytest's cache directory:
~15 s cold, ~1 s warm.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted(
    p for p in (Path(__file__).parent / "samples").glob("*.py") if p.stem != "__init__"
)
SAMPLES_BY_NAME = {p.stem: p for p in SAMPLES}
EXPECTATION = re.compile(r"^#\s*(R|E):\s*(.+?)\s*$")
# path:line: severity: message  [code]   (the code is absent from notes)
REPORTED = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<severity>error|note): (?P<message>.*)$")
REVEALED = re.compile(r'^Revealed type is "(?P<type>.*)"$')
ERROR_CODE = re.compile(r"\s+\[(?P<code>[a-z0-9-]+)\]$")

Findings = dict[int, list[tuple[str, str]]]
"""line -> [("R", revealed type) or ("E", error code)]"""


def expectations(sample: Path) -> Findings:
    """The ``# R:``/``# E:`` comments of ``sample``, by the line they are about."""
    found: Findings = defaultdict(list)
    tokens = tokenize.generate_tokens(io.StringIO(sample.read_text()).readline)
    code_lines: set[int] = set()
    comments: list[tuple[int, str]] = []
    for token in tokens:
        if token.type == tokenize.COMMENT:
            comments.append((token.start[0], token.string))
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(token.start[0])
    for line, comment in comments:
        match = EXPECTATION.match(comment)
        if match is None:
            continue
        # A comment alone on its line is about the next line (for types too long to share one).
        target = line if line in code_lines else min(n for n in code_lines if n > line)
        found[target].append((match[1], match[2]))
    return found


def run_mypy(files: list[Path], cache_dir: Path) -> str:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--warn-unreachable",
            "--python-version=3.11",
            "--no-color-output",
            "--no-error-summary",
            "--hide-error-context",
            "--show-error-codes",
            f"--cache-dir={cache_dir}",
            *(str(path.relative_to(ROOT)) for path in files),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # 0: clean, 1: errors reported (the mistakes sample has some); anything else: mypy broke.
    assert completed.returncode in (0, 1), completed.stdout + completed.stderr
    return completed.stdout


def parse(output: str) -> dict[str, Findings]:
    """mypy's report, per sample path and line, in the shape of ``expectations``."""
    reported: dict[str, Findings] = defaultdict(lambda: defaultdict(list))
    for raw in output.splitlines():
        match = REPORTED.match(raw)
        assert match is not None, f"unexpected mypy output line: {raw!r}"
        findings = reported[Path(match["path"]).as_posix()][int(match["line"])]
        message = match["message"]
        if match["severity"] == "note":
            revealed = REVEALED.match(message)
            # Other notes elaborate on the error just before them (as "Following member(s)").
            if revealed is not None:
                findings.append(("R", revealed["type"]))
            continue
        code = ERROR_CODE.search(message)
        findings.append(("E", code["code"] if code else message))
    return reported


@pytest.fixture(scope="module")
def reported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Findings]:
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache_dir = (
        cache.mkdir("mypy-samples") if cache is not None else tmp_path_factory.mktemp("mypy")
    )
    return parse(run_mypy(SAMPLES, cache_dir))


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_type_checks_as_its_comments_say(
    sample: Path, reported: dict[str, Findings]
) -> None:
    expected = expectations(sample)
    assert expected, f"{sample.name} states no expectation: it could not fail"
    actual = reported.get(sample.relative_to(ROOT).as_posix(), {})
    lines = sorted(set(expected) | set(actual))
    differences = [
        f"line {line}: expected {want}, mypy reported {got}"
        for line in lines
        if (want := sorted(expected.get(line, []))) != (got := sorted(actual.get(line, [])))
    ]
    assert not differences, "\n".join(differences)


def test_nothing_reported_outside_the_samples(reported: dict[str, Findings]) -> None:
    samples = {path.relative_to(ROOT).as_posix() for path in SAMPLES}
    assert {path: dict(found) for path, found in reported.items() if path not in samples} == {}


def test_mistakes_sample_expects_errors() -> None:
    # The samples that must fail: without errors expected, a broken check would pass.
    kinds = {
        kind for found in expectations(SAMPLES_BY_NAME["mistakes"]).values() for kind, _ in found
    }
    assert kinds == {"E"}


def test_readme_lines_are_the_readme_s() -> None:
    """The README sample's ``# README`` lines are the README's own, so what is type-checked is
    what users copy."""
    readme = {line.strip() for line in (ROOT / "README.md").read_text().splitlines()}
    marked = [
        line.removesuffix("# README").rstrip().strip()
        for line in SAMPLES_BY_NAME["readme"].read_text().splitlines()
        if line.rstrip().endswith("# README")
    ]
    assert len(marked) >= 10
    missing = [line for line in marked if line not in readme]
    assert not missing, f"lines of samples/readme.py no longer in README.md: {missing}"
