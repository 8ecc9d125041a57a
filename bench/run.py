"""``make bench``: run every benchmark, print one table, and rewrite the figures in docs/benchmarks.md.

Each benchmark runs in an environment of its own (a throwaway PostgreSQL database and a Redis DB
number, see ``bench.common``), removed when it ends. The exit status is 0 only if every correctness
check passed; a timing that misses its target is reported in the table, not in the exit status.
The figures section of docs/benchmarks.md (between the ``bench:figures`` markers) is rewritten only
after a full, passing run; ``--only`` and ``--no-docs`` leave the file alone.

To add a benchmark: a module in bench/ with ``run(env: Environment) -> Result``, listed in BENCHMARKS.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common, dispatch, embedded, fleet, labels, limiter, plot, pollers, status, valuation
from bench.common import BenchError, Environment, Result, log

BENCHMARKS: dict[str, Callable[[Environment], Result]] = {
    "labels": labels.run,
    "limiter": limiter.run,
    "valuation": valuation.run,
    "status": status.run,
    "dispatch": dispatch.run,
    "fleet": fleet.run,
    "pollers": pollers.run,
    "embedded": embedded.run,
}

DOCS = common.REPO_ROOT / "docs" / "benchmarks.md"
PLOT = DOCS.parent / "benchmarks-valuation.png"
START_MARKER = "<!-- bench:figures:start (written by bench/run.py; edits between the markers are lost) -->"
END_MARKER = "<!-- bench:figures:end -->"
FIGURES_SECTION = re.compile(r"<!-- bench:figures:start.*?-->.*?<!-- bench:figures:end -->", re.DOTALL)


def figures_section(results: list[Result], facts: dict[str, str], plotted: bool) -> str:
    image = [f"![Valuation: run time against products, ours, the floor and the seed recipe]({PLOT.name})"] if plotted else []
    return "\n\n".join(
        [
            START_MARKER,
            "Measured by `make bench` on:",
            common.facts_list(facts),
            *image,
            common.results_table(results),
            "Checks:",
            common.checks_list(results),
            END_MARKER,
        ]
    )


def rewrite_docs(section: str, path: Path = DOCS) -> None:
    """Replace the figures section of ``path``; a file without the markers gets the section appended."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if FIGURES_SECTION.search(text):
        text = FIGURES_SECTION.sub(lambda _match: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n## Figures\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only this benchmark (repeatable)")
    parser.add_argument("--no-docs", action="store_true", help=f"do not rewrite {DOCS.relative_to(common.REPO_ROOT)}")
    args = parser.parse_args(argv)
    common.exit_cleanly_on_sigterm()
    selected = args.only or list(BENCHMARKS)

    results: list[Result] = []
    try:
        common.require_services()
        if "status" in selected:
            status.require_wrk()  # now, rather than after the other benchmarks' minutes
        facts = common.machine_facts()
        for name in selected:
            log(f"--- {name}")
            with common.environment() as env:
                results.append(BENCHMARKS[name](env))
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2

    print(common.format_results(results, facts))
    ok = all(result.ok for result in results)
    if not ok:
        print("\nbench: a correctness check FAILED; docs/benchmarks.md left as it was", file=sys.stderr)
    elif args.no_docs or args.only:
        log("docs/benchmarks.md left as it was (--no-docs or --only)")
    else:
        plotted = plot.write_plot(results, PLOT, f"Valuation, {facts.get('CPUs', '?')} CPUs, {facts.get('date', '')}")
        rewrite_docs(figures_section(results, facts, plotted))
        log(f"figures written to {DOCS.relative_to(common.REPO_ROOT)}" + (f" and {PLOT.relative_to(common.REPO_ROOT)}" if plotted else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
