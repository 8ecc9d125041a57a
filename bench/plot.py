"""The plot in docs/benchmarks.md: run time against number of products, ours against the floor and the seed recipe.

Drawn from the points the benchmarks recorded (``Result.point``) with matplotlib's non-interactive Agg
backend, on log-log axes: a line of slope 1 is linear growth, and the gap between two lines is their
ratio, the same at every size. Estimated points (a seed recipe too slow to run) are drawn hollow.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bench.common import Result

# One style per line name's start, so a chunk size in the name keeps its line recognisable.
STYLES = (
    ("floor", {"color": "black", "linestyle": "--", "marker": "s"}),
    ("seed recipe", {"color": "tab:red", "linestyle": "-", "marker": "^"}),
    ("ours", {"color": "tab:blue", "linestyle": "-", "marker": "o"}),
)


def _style(line: str, index: int) -> dict[str, str]:
    for prefix, style in STYLES:
        if line.startswith(prefix):
            style = dict(style)
            if prefix == "ours" and index % 2:  # the second "ours" line: the best chunk size
                style.update(color="tab:green", marker="D")
            return style
    return {"marker": "o"}


def write_plot(results: Iterable[Result], path: Path, title: str) -> bool:
    """Draw every series of ``results`` into ``path`` (PNG); False if there was nothing to draw."""
    series = {name: points for result in results for name, points in result.series.items() if points}
    if not series:
        return False
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7.5, 5), dpi=110)
    ours = 0
    for name, points in series.items():
        points = sorted(points, key=lambda point: point.products)
        style = _style(name, ours)
        ours += name.startswith("ours")
        axes.plot([p.products for p in points], [p.seconds for p in points], label=name,
                  color=style.get("color"), linestyle=style.get("linestyle", "-"), marker=None)
        for point in points:
            axes.plot(point.products, point.seconds, marker=style.get("marker", "o"), color=style.get("color"),
                      markerfacecolor="white" if point.estimated else style.get("color"), markersize=7)
            axes.annotate(f"{point.seconds:,.1f} s" + (" (est.)" if point.estimated else ""), (point.products, point.seconds),
                          textcoords="offset points", xytext=(6, -4), fontsize=8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _position: f"{value:,.0f}"))
    axes.set_xlabel("products")
    axes.set_ylabel("seconds, POST to finished (log scale)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    return True
