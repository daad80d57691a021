"""Rendering runs: the console table, the two figures and a self-contained HTML report."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.table import Table  # noqa: E402

from .fileio import dead_siblings, make_temp_dir, write_atomic  # noqa: E402
from .results import ACCURACY_PNG, REPORT_FILES, REPORT_HTML, ROC_PNG, RunData  # noqa: E402

_MAX_ROC_CURVES = 5
HTML_STYLE = (
    "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
    "img{max-width:48%}</style>"
)


def _interval(row: dict, metric: str, scale: float = 1.0, digits: int = 4) -> str:
    """" [low, high]" from a row's bootstrap interval columns; empty for runs without them or where none was
    given (a TAR@FAR too far in the ROC's tail)."""
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    if low is None or high is None or low != low or high != high:  # absent or NaN
        return ""
    return f" [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def console_table(run: RunData) -> Table:
    """DF, probe size, accuracy mean ± std (just the accuracy when one fold is reported) with its 95% interval,
    AUC, EER and TAR@FAR (with intervals where given) for each DF of one run."""
    settings = run.manifest.get("settings", {})
    title = (
        f"{run.label} on {run.manifest.get('protocol')} · {run.manifest['degradation']['name']} · "
        f"mode {run.manifest['degradation']['mode']} · fusion {settings.get('fusion')}"
    )
    has_intervals = "accuracy_ci_low" in run.results
    caption = "in brackets: 95% identity-bootstrap interval (see definitions.intervals)" if has_intervals else None
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for column in ("DF", "probe px", "IOD px", "accuracy %", "AUC", "EER %", "TAR@FAR 1e-3", "TAR@FAR 1e-2"):
        table.add_column(column, justify="right")
    one_fold = run.folds["fold"].nunique() == 1
    for row in run.results.to_dict("records"):
        spread = "" if one_fold else f"±{100 * row['accuracy_std']:.2f}"
        table.add_row(
            str(row["df"]),
            row["probe_px"],
            f"{row['interocular_px']:.1f}",
            f"{100 * row['accuracy_mean']:.2f}{spread}{_interval(row, 'accuracy', 100, 2)}",
            f"{row['auc']:.4f}",
            f"{100 * row['eer']:.2f}",
            f"{row['tar_at_far_0.001']:.4f}{_interval(row, 'tar_at_far_0.001', digits=3)}",
            f"{row['tar_at_far_0.01']:.4f}{_interval(row, 'tar_at_far_0.01', digits=3)}",
        )
    return table


def results_json(runs: list[RunData]) -> str:
    """The per-DF results of each run with its label and definitions, for ``--json``."""
    payload = [
        {
            "run": str(run.path) if run.path else None,
            "label": run.label,
            "definitions": run.manifest.get("definitions"),
            # JSON has no NaN: a missing interval (empty cell) is null
            "results": run.results.astype(object).where(run.results.notna(), None).to_dict("records"),
        }
        for run in runs
    ]
    return json.dumps(payload if len(payload) > 1 else payload[0], indent=2, ensure_ascii=False)


def _roc_dfs(available: list[int]) -> list[int]:
    """At most five DFs spread over the sweep, always including the first and the last."""
    if len(available) <= _MAX_ROC_CURVES:
        return available
    step = (len(available) - 1) / (_MAX_ROC_CURVES - 1)
    return sorted({available[round(i * step)] for i in range(_MAX_ROC_CURVES)})


def plot_roc(runs: list[RunData], path: Path) -> None:
    """ROC curves (log FPR) of a few DFs per run; colour = DF, line style = run."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    styles = ["-", "--", ":", "-."]
    all_dfs = sorted({df for run in runs for df in run.results["df"]})
    colours = {df: plt.cm.viridis(i / max(1, len(all_dfs) - 1)) for i, df in enumerate(all_dfs)}
    for k, run in enumerate(runs):
        for df in _roc_dfs(sorted(run.results["df"])):
            points = run.roc[run.roc["df"] == df]
            probe = run.results.loc[run.results["df"] == df, "probe_px"].iloc[0]
            label = f"DF {df} ({probe})" + (f" · {run.label}" if len(runs) > 1 else "")
            ax.plot(
                points["fpr"].clip(lower=1e-4),
                points["tpr"],
                styles[k % len(styles)],
                color=colours[df],
                label=label,
            )
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title("ROC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def plot_accuracy(runs: list[RunData], path: Path) -> None:
    """Mean accuracy (± std over folds) against the probe's interocular distance, one curve per run."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for run in runs:
        table = run.results.sort_values("interocular_px")
        ax.errorbar(
            table["interocular_px"],
            100 * table["accuracy_mean"],
            yerr=100 * table["accuracy_std"],
            marker="o",
            capsize=3,
            label=run.label,
        )
    reference = runs[0].results.sort_values("interocular_px")
    ax.set_xscale("log")
    ax.set_xticks(reference["interocular_px"])
    ax.set_xticklabels([f"{p}\nDF {d}" for p, d in zip(reference["probe_px"], reference["df"])], fontsize=6)
    ax.minorticks_off()
    ax.set_xlabel("probe size (interocular distance on a log axis)")
    ax.set_ylabel("verification accuracy % (mean ± std over folds)")
    ax.set_title("Accuracy vs resolution")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def save_figure(fig, path: Path, also: tuple[str, ...] = ()) -> None:
    """Write the figure as ``path`` (PNG) and, for papers, beside it in the ``also`` formats (e.g. "pdf")."""
    fig.tight_layout()
    for suffix in ("png", *also):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix, dpi=120)
        write_atomic(path.with_suffix(f".{suffix}"), buffer.getvalue())
    plt.close(fig)


def render(runs: list[RunData], folder: Path) -> None:
    """Write both figures and report.html (``results.REPORT_FILES``) into ``folder``."""
    folder = Path(folder)
    plot_roc(runs, folder / ROC_PNG)
    plot_accuracy(runs, folder / ACCURACY_PNG)
    write_atomic(folder / REPORT_HTML, html_report(runs, folder))


def render_into(runs: list[RunData], folder: Path) -> None:
    """Render in a hidden temporary folder inside ``folder``, then move the files into place: a render that
    fails (or is killed) leaves the previous report files as they were, not a new figure beside an old page."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in dead_siblings(folder / "report"):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = make_temp_dir(folder, "report")
    try:
        render(runs, tmp)
        for name in REPORT_FILES:
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def render_run(run: RunData, folder: Path) -> None:
    render([run], folder)


def image_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{alt}" src="data:image/png;base64,{data}">'


def html_report(runs: list[RunData], folder: Path) -> str:
    """A single HTML file with the figures embedded, the tables and the definitions behind the numbers."""
    parts = [
        "<!doctype html><meta charset='utf-8'><title>lrbench report</title>",
        HTML_STYLE,
        "<h1>lrbench report</h1>",
        image_tag(folder / ACCURACY_PNG, "accuracy vs resolution"),
        image_tag(folder / ROC_PNG, "ROC"),
    ]
    for run in runs:
        manifest = run.manifest
        parts.append(f"<h2>{html.escape(run.label)} · {html.escape(str(manifest.get('protocol')))}</h2>")
        table = run.results.copy()
        for column in ("accuracy_mean", "accuracy_std", "accuracy_sem", "eer", "accuracy_ci_low", "accuracy_ci_high"):
            if column in table:  # the intervals are absent from runs written before them
                table[column] = (100 * table[column]).round(2)
        parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="–"))  # no interval: –
        data = manifest.get("data", {})
        facts = {
            "pairs file": data.get("pairs_file"),
            "pairs / folds / unique images": " / ".join(
                str(data.get(key)) for key in ("pairs", "folds", "unique_images")
            ),
            "degradation": f"{manifest['degradation']['name']}: {manifest['degradation']['description']}",
            "input": json.dumps(manifest.get("input")),
            "weights": json.dumps(manifest.get("weights")),
            **manifest.get("definitions", {}),
            "command": manifest.get("command"),
            "citation": manifest.get("citation"),
        }
        parts.append("<table>")
        parts.extend(
            f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in facts.items()
        )
        parts.append("</table>")
        folds = run.folds.pivot(index="fold", columns="df", values="accuracy") * 100
        parts.append("<details><summary>per-fold accuracy %</summary>")
        parts.append(folds.to_html(float_format=lambda v: f"{v:.2f}"))
        parts.append("</details>")
    return "\n".join(parts) + "\n"
