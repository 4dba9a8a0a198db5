"""The report's PNG plots: accuracy vs novelty with the baselines' frontiers, PCA, LMC.

Figures are drawn on a Matplotlib Agg canvas directly (no pyplot), so evaluation never changes
the caller's backend or global figure state and needs no display.
"""

from __future__ import annotations

import io as _stdio
import math
import os
from pathlib import Path

from paramgen import io
from paramgen.evaluation.novelty import Frontier
from paramgen.evaluation.report import EvalReport

ORIGINAL_COLOR, GENERATED_COLOR = "tab:blue", "tab:orange"
BASELINE_STYLE = {"noise": {"color": "0.45", "marker": "x"},
                  "mixture": {"color": "tab:green", "marker": "+"}}


def _figure(width: float = 6.4, height: float = 4.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    buf = _stdio.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return io.write_bytes(path, buf.getvalue())


def _staircase(front: Frontier) -> tuple[list[float], list[float]]:
    """The frontier as a step line: best score at each novelty, from 0 to its last point."""
    xs, ys, left = [], [], 0.0
    for v, s in zip(front.novelty, front.score):
        xs += [left, v]
        ys += [100 * s, 100 * s]
        left = v
    if xs:  # beyond the most novel baseline model no baseline reaches: drop to the axis
        xs.append(left)
        ys.append(0.0)
    return xs, ys


def plot_novelty(report: EvalReport, path: str | os.PathLike) -> Path:
    """Left: metric vs novelty with every baseline model and each baseline's frontier, the
    originals and the generated models (filled = beats both). Right: metric vs distance to the
    nearest training checkpoint in parameter space. Upper right = accurate and new."""
    fig = _figure(12.0, 4.8)
    ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    label = report.metric.replace("_", " ")
    shown: list[float] = [100 * s for s in report.original_scores + report.generated_scores]
    for base in (report.noise, report.mixture):
        if base is None or not base.scores:
            continue
        style = BASELINE_STYLE.get(base.name, {"color": "0.3", "marker": "."})
        nov = [v for r in base.novelty for v in r]
        sc = [100 * v for r in base.scores for v in r]
        ax.scatter(nov, sc, s=18, alpha=0.6, label=f"{base.name} baseline", **style)
        xs, ys = _staircase(base.frontier())
        ax.plot(xs, ys, color=style["color"], lw=1.4, label=f"{base.name} frontier")
        if base.distances:
            bx.scatter([v for r in base.distances for v in r], sc, s=18, alpha=0.6,
                       label=f"{base.name} baseline", **style)
    orig = [(v, 100 * s) for v, s in zip(report.original_novelty, report.original_scores)
            if v == v]
    if orig:
        ax.scatter(*zip(*orig), s=30, color=ORIGINAL_COLOR, label="original", zorder=3)
    won = report.beats_both
    for flag, face, text in ((True, GENERATED_COLOR, "generated, beats both"),
                             (False, "none", "generated")):
        pts = [(v, 100 * s) for v, s, b in zip(report.generated_novelty,
                                              report.generated_scores, won) if b == flag]
        if pts:
            ax.scatter(*zip(*pts), s=40, marker="^", facecolors=face,
                       edgecolors=GENERATED_COLOR, label=text, zorder=4)
    mean = report.original_summary["mean"]
    if mean == mean:
        floor = 100 * (mean - report.beat_margin)
        ax.axhline(floor, color="tab:red", ls=":", lw=1,
                   label=f"originals' mean - {100 * report.beat_margin:g} points")
        shown.append(floor)
    for dist, scores, color, marker, text in (
            (report.original_distance, report.original_scores, ORIGINAL_COLOR, "o", "original"),
            (report.generated_distance, report.generated_scores, GENERATED_COLOR, "^",
             "generated")):
        pts = [(d, 100 * s) for d, s in zip(dist, scores) if d == d]
        if pts:
            bx.scatter(*zip(*pts), s=30, color=color, marker=marker, label=text, zorder=3)
    # Zoom on where the models are: broken baseline models (near chance) would squash them.
    finite = [v for v in shown if math.isfinite(v)]
    if finite:
        lo, hi = min(finite), max(finite)
        pad = max(2.0, 0.5 * (hi - lo))
        for a in (ax, bx):
            a.set_ylim(max(0.0, lo - pad), min(100.0, hi + 0.3 * pad))
    ax.set_xlabel("novelty = 1 - max IoU of wrong predictions vs the checkpoints")
    ax.set_ylabel(f"{label} (%)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_title(report.beat_line().split(" (")[0]
                 + (f"\n(task {report.task})" if report.task else ""), fontsize=9)
    bx.set_xscale("symlog", linthresh=1e-4)  # linear near 0 so exact copies (0) still show
    bx.set_xlim(left=0)
    bx.set_xlabel("distance to the nearest checkpoint (L2 / mean checkpoint norm)")
    bx.set_ylabel(f"{label} (%)")
    bx.set_title("parameter space", fontsize=9)
    for a in (ax, bx):
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="lower left")
    return _save(fig, Path(path))


plot_similarity = plot_novelty  # the name of this plot before novelty replaced max similarity


def plot_pca(report: EvalReport, path: str | os.PathLike) -> Path:
    """Originals and generated models in the first two principal components of one tensor."""
    fig = _figure()
    ax = fig.add_subplot()
    p = report.pca
    o, g = p["original"], p["generated"]
    ax.scatter([c[0] for c in o], [c[1] for c in o], s=30, color=ORIGINAL_COLOR, label="original")
    ax.scatter([c[0] for c in g], [c[1] for c in g], s=30, color=GENERATED_COLOR, marker="^",
               label="generated")
    ev = p["explained"]
    ax.set_xlabel(f"PC 1 ({100 * ev[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * ev[1]:.1f}% of variance)")
    ax.set_title(f"PCA of '{p['key']}': {len(o)} original, {len(g)} generated")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_lmc(report: EvalReport, path: str | os.PathLike) -> Path:
    """The metric along the straight line between the best original and best generated model."""
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot()
    c = report.lmc
    ax.plot(c["alphas"], [100 * s for s in c["scores"]], marker="o", color="tab:green",
            label="interpolated model")
    ax.scatter([0], [100 * c["scores"][0]], s=60, color=ORIGINAL_COLOR, zorder=3,
               label=f"alpha=0: {c['a']}")
    ax.scatter([1], [100 * c["scores"][-1]], s=60, color=GENERATED_COLOR, marker="^", zorder=3,
               label=f"alpha=1: {c['b']}")
    ax.set_xlabel("alpha  ((1 - alpha) * original + alpha * generated)")
    ax.set_ylabel(f"{report.metric.replace('_', ' ')} (%)")
    ax.set_title("linear mode connectivity: best original to best generated")
    # Leave room below the curve: a 1-point wobble should not look like a 50-point barrier.
    lo, hi = min(c["scores"]) * 100, max(c["scores"]) * 100
    ax.set_ylim(max(0.0, lo - 5), min(100.0, hi + 2))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def write_plots(report: EvalReport, out_dir: str | os.PathLike) -> dict[str, Path]:
    """The report's PNGs in `out_dir`: novelty.png, and pca.png / lmc.png when the report holds
    a PCA / an LMC curve. Returns name -> path of what was written."""
    out = Path(out_dir)
    written = {"novelty": plot_novelty(report, out / "novelty.png")}
    if report.pca:
        written["pca"] = plot_pca(report, out / "pca.png")
    if report.lmc:
        written["lmc"] = plot_lmc(report, out / "lmc.png")
    return written
