"""Rendering runs: the console table, the two figures and a self-contained HTML report."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import textwrap
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from rich import box  # noqa: E402
from rich.table import Table  # noqa: E402

from ..console import unclipped_table  # noqa: E402
from ..errors import UsageError  # noqa: E402
from ..fileio import dead_siblings, make_temp_dir, named_as_target, write_atomic  # noqa: E402
from .formats import figure_formats  # noqa: E402
from .results import (  # noqa: E402
    ACCURACY_PNG,
    MANIFEST,
    OVERLAY_CSV,
    OVERLAY_FILES,
    REPORT_HTML,
    RESULT_COLUMNS,
    ROC_PNG,
    RunData,
)
from .stats import MIN_IMPOSTORS_AT_FAR, measurable_far  # noqa: E402

_MAX_ROC_CURVES = 5
FARS = (1e-3, 1e-2)  # the operating points results.csv reports (tar_at_far_0.001, tar_at_far_0.01)
# The y axis of accuracy vs resolution starts here (or lower, for a run below it) so that curves of different
# reports look alike and a small difference is not blown up by an auto-zoomed axis; 50 % is chance.
ACCURACY_FLOOR = 45
CHANCE = 50
# Where the ROC's colour map (plasma: dark blue, magenta, orange, pale yellow) is cut: its last colour, an
# orange, still has a contrast of 2.2:1 against white; the map's yellow end (1.1:1) vanishes on paper.
ROC_COLOUR_END = 0.75
# What must agree for an overlay to compare models on the same faces: manifest keys and their names.
DATA_FACTS = {
    "protocol": ("protocol",),
    "pairs sha256": ("data", "pairs_sha256"),
    "protocol file sha256": ("components", "protocol", "sha256"),
    "images sha256": ("data", "images_sha256"),
    "landmarks sha256": ("data", "landmarks_sha256"),
    "pre-aligned images (--aligned)": ("settings", "aligned"),
    "framing of the pre-aligned images": ("input", "aligned_crops", "source_template"),
    "generated distractors": ("data", "generated_distractors"),
}
HTML_STYLE = (
    "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}th{background:#eee}"
    "td.text{text-align:left}tr.differs td,tr.differs th{background:#fff3c4}.warning{color:#a00;font-weight:bold}"
    "img{max-width:48%}td,th{overflow-wrap:anywhere;word-break:break-word}</style>"
)


def _interval(row: dict, metric: str, scale: float = 1.0, digits: int = 4) -> str:
    """"[low, high]" from a row's bootstrap interval columns; empty for runs without them or where none was
    given (a TAR@FAR too far in the ROC's tail)."""
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    if low is None or high is None or low != low or high != high:  # absent or NaN
        return ""
    return f"[{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def _percent(rate: float) -> str:
    """A rate as percent with two decimals; "n/a" where it was not measured (NaN: a FAR below one pair)."""
    return "n/a" if rate != rate else f"{100 * rate:.2f}"


def _optional(value: float | None) -> str:
    """A number of a column that runs written before it lack (absent or NaN: "–")."""
    return "–" if value is None or value != value else f"{value:.2f}"


def _tar_cell(row: dict, far: float) -> str:
    """report.html's TAR@FAR cell: percent and interval, or "n/a" where the FAR is below one impostor pair."""
    metric = f"tar_at_far_{far:g}"
    if row[metric] != row[metric]:
        return _percent(row[metric])
    return f"{_percent(row[metric])} {_interval(row, metric, 100, 2) or '(no interval)'}"


def impostor_pairs(run: RunData) -> int:
    """Impostor pairs in the reported folds: what every FAR is a fraction of (FAR × this = false accepts)."""
    scores = run.scores[run.scores["df"] == run.scores["df"].iloc[0]]
    return int(((scores["same"] == 0) & scores["fold"].isin(run.folds["fold"].unique())).sum())


def _far_text(far: float) -> str:
    return f"{100 * far:g} %"


def tar_basis(run: RunData, far: float) -> str:
    """How many impostor pairs a TAR@FAR rests on (FAR × impostors), and whether it has an interval or exists."""
    impostors = impostor_pairs(run)
    if not measurable_far(far, impostors):
        return (f"TAR at FAR {_far_text(far)}: n/a, not measured: it would rest on {far * impostors:g} of "
                f"{impostors} impostor pairs, less than one")
    text = f"TAR at FAR {_far_text(far)} rests on {far * impostors:g} of {impostors} impostor pairs"
    if far * impostors < MIN_IMPOSTORS_AT_FAR:
        text += f" (fewer than {MIN_IMPOSTORS_AT_FAR}: no interval, read it with care)"
    return text


def _title_parts(run: RunData) -> list[str]:
    manifest = run.manifest
    data = manifest.get("data", {}).get("root") or Path(manifest.get("settings", {}).get("data") or "").name
    dataset = f"{data} ({manifest['protocol']})" if data else manifest["protocol"]
    return [dataset, manifest["degradation"]["name"], f"degraded: {manifest['degradation']['mode']}"]


def _title(*runs: RunData) -> str:
    """Dataset (protocol), degradation and mode, as far as the runs share them (the labels tell the rest)."""
    parts = [_title_parts(run) for run in runs]
    return " · ".join(part for k, part in enumerate(parts[0]) if all(other[k] == part for other in parts))


def console_table(run: RunData) -> Table:
    """One row per DF (and a row below with the 95% intervals where given), every column with its unit, each
    cell kept whole at any terminal width (``console.unclipped_table``): percent except AUC, as in report.html."""
    settings = run.manifest.get("settings", {})
    one_fold = run.folds["fold"].nunique() == 1
    norms = "embedding_norm" in run.results  # runs written before it lack the column
    headers = ["DF", "probe px", "IOD px", "accuracy %", "AUC", "EER %",
               *(f"TAR % @{_far_text(far).replace(' ', '')}" for far in FARS), *(["norm"] if norms else [])]
    rows = []
    for row in run.results.to_dict("records"):
        spread = "" if one_fold else f" ±{100 * row['accuracy_std']:.2f}"
        rows.append([str(row["df"]), row["probe_px"], f"{row['interocular_px']:.1f}",
                     f"{100 * row['accuracy_mean']:.2f}{spread}", f"{row['auc']:.4f}", f"{100 * row['eer']:.2f}",
                     *(_percent(row[f"tar_at_far_{far:g}"]) for far in FARS),
                     *([f"{row['embedding_norm']:.2f}"] if norms else [])])
        intervals = [_interval(row, "accuracy", 100, 1), "", "",  # AUC's interval: report.html, --json
                     *(_interval(row, f"tar_at_far_{far:g}", 100, 1) for far in FARS), *([""] if norms else [])]
        if any(intervals):
            rows.append(["", "", "", *intervals])
    caption = [f"accuracy: mean{'' if one_fold else ' ± std over folds (points)'}; IOD: interocular distance; "
               "TAR % @x%: true accept rate at false accept rate x"
               + ("; norm: mean embedding norm (XNorm), a check of the input convention" if norms else "")]
    if "accuracy_ci_low" in run.results:
        caption.append("in brackets: 95% identity-bootstrap interval, percent (see definitions.intervals)")
    caption += [tar_basis(run, far) for far in FARS]
    return unclipped_table(
        headers, rows, whole=tuple(headers),
        title=f"{run.label} on {_title(run)} · fusion {settings.get('fusion')}", title_justify="left",
        caption="\n".join(caption), caption_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True,
        pad_edge=False,
    )


def results_entry(run: RunData) -> dict:
    """The per-DF results of a run with its label and definitions, for ``--json``."""
    return {
        "run": str(run.path) if run.path else None,
        "label": run.label,
        "definitions": run.manifest.get("definitions"),
        # JSON has no NaN: a missing interval (empty cell) is null
        "results": run.results.astype(object).where(run.results.notna(), None).to_dict("records"),
    }


def results_json(runs: list[RunData]) -> str:
    """The per-DF results of each run with its label and definitions, for ``--json``."""
    payload = [results_entry(run) for run in runs]
    return json.dumps(payload if len(payload) > 1 else payload[0], indent=2, ensure_ascii=False)


def manifest_fact(manifest: dict, keys: tuple[str, ...]):
    """``manifest[keys[0]][keys[1]]…``, None where a key is missing (runs from older versions lack some)."""
    value = manifest
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def data_differences(runs: list[RunData]) -> list[str]:
    """The ``DATA_FACTS`` on which the runs disagree, each with every run's value (hashes shortened)."""
    different = []
    for name, keys in DATA_FACTS.items():
        values = [manifest_fact(run.manifest, keys) for run in runs]
        if len(set(map(str, values))) > 1:
            shown = [str(value)[:12] if "sha256" in name and value else str(value) for value in values]
            different.append(f"{name} {' vs '.join(shown)}")
    return different


def check_overlay(runs: list[RunData], allow_different_data: bool) -> list[str]:
    """Refuse to overlay runs on different data unless allowed; the differences (empty if none) are returned
    so that the figures and the page can say so."""
    for other in runs[1:]:
        different = data_differences([runs[0], other])
        if different and not allow_different_data:
            raise UsageError(
                f"{other.path}: evaluated on other data than {runs[0].path} ({'; '.join(different)}), so an "
                "overlay would compare different faces; pass --allow-different-data to overlay them anyway"
            )
    return data_differences(runs)


def run_labels(runs: list[RunData]) -> list[str]:
    """Each run's label; runs sharing one get what tells them apart (weights file, backbone, degradation and
    mode, or folder), so no two curves or columns carry the same name."""
    facts = (
        lambda run: Path(str(manifest_fact(run.manifest, ("weights", "file")) or "no weights")).name,
        lambda run: run.manifest["backbone"],
        lambda run: f"{run.manifest['degradation']['name']}, {run.manifest['degradation']['mode']}",
        lambda run: run.path.name if run.path else "",
    )
    labels = [run.label for run in runs]
    for label in set(labels):
        group = [k for k, other in enumerate(labels) if other == label]
        if len(group) == 1:
            continue
        fact = next((fact for fact in facts if len({fact(runs[k]) for k in group}) == len(group)), None)
        for number, k in enumerate(group, 1):
            labels[k] = f"{label} ({fact(runs[k]) if fact else f'#{number}'})"
    return labels


def _different_data_note(different: list[str]) -> str:
    return f"NOTE: runs on DIFFERENT data ({'; '.join(different)})"


def _roc_dfs(available: list[int]) -> list[int]:
    """At most five DFs spread over the sweep, always including the first and the last."""
    if len(available) <= _MAX_ROC_CURVES:
        return available
    step = (len(available) - 1) / (_MAX_ROC_CURVES - 1)
    return sorted({available[round(i * step)] for i in range(_MAX_ROC_CURVES)})


LEGEND_WIDTH = 44  # characters per legend line: a long run label wraps instead of squeezing the axes


def _legend_label(text: str) -> str:
    """A legend entry wrapped to ``LEGEND_WIDTH``: the legend sits beside the axes and takes its width from its
    longest line (a cross-validation's label alone can be 130 characters)."""
    return "\n".join(textwrap.wrap(text, LEGEND_WIDTH, break_on_hyphens=False, break_long_words=False))


def roc_figure(runs: list[RunData], different: list[str] = ()) -> Figure:
    """ROC curves (log FAR from 1/impostors, the smallest non-zero FAR, marked) of a few DFs per run, with
    AUC and EER in a legend beside the axes; colour = DF (plasma without its pale yellow end), line = run."""
    fig, ax = plt.subplots(figsize=(9, 4.8))
    styles = ["-", "--", ":", "-."]
    all_dfs = sorted({df for run in runs for df in run.results["df"]})
    colours = {df: plt.cm.plasma(ROC_COLOUR_END * i / max(1, len(all_dfs) - 1)) for i, df in enumerate(all_dfs)}
    floors = sorted({1 / impostor_pairs(run) for run in runs})
    labels = run_labels(runs)
    for k, run in enumerate(runs):
        for df in _roc_dfs(sorted(run.results["df"])):
            points = run.roc[run.roc["df"] == df]
            row = run.results[run.results["df"] == df].iloc[0]
            label = f"DF {df} ({row['probe_px']}) AUC {row['auc']:.3f} EER {100 * row['eer']:.1f} %"
            ax.plot(points["fpr"].clip(lower=floors[0]), points["tpr"], styles[k % len(styles)],
                    color=colours[df], label=_legend_label(label + (f" · {labels[k]}" if len(runs) > 1 else "")))
    for floor in floors:  # FAR 0 is drawn here; left of it there is nothing to measure
        ax.axvline(floor, color="0.3", linestyle="--", linewidth=1.5,
                   label=f"smallest non-zero FAR: 1/{round(1 / floor)} impostor pairs")
        ax.annotate(f"FAR floor 1/{round(1 / floor)} = {floor:.1e}", xy=(floor, 1), xycoords=("data", "axes fraction"),
                    xytext=(0, 3), textcoords="offset points", fontsize=7, color="0.3")  # above the curves
    ax.set_xscale("log")
    ax.set_xlim(floors[0], 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate (log scale; FAR 0 drawn at the smallest non-zero FAR)")
    ax.set_ylabel("true accept rate")
    title = " · ".join(filter(None, ("ROC", _title(*runs))))
    ax.set_title(title + (f"\n{_different_data_note(different)}" if different else ""), fontsize=9,
                 color="#a00" if different else "black", pad=14)  # above the floor's annotation
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_roc(runs: list[RunData], path: Path, different: list[str] = ()) -> None:
    save_figure(roc_figure(runs, different), path, also=figure_formats())


def _ticks(runs: list[RunData]) -> list[tuple[float, str]]:
    """(interocular px, label) for every distinct probe of the runs: probe size, interocular px and DF; DFs
    whose probes share a width (8×10 and 8×9) share an interocular distance, and so one tick."""
    groups: dict[float, dict[str, list]] = {}
    for run in runs:
        for row in run.results.to_dict("records"):
            group = groups.setdefault(round(row["interocular_px"], 2), {"probe": [], "df": []})
            for key, value in (("probe", row["probe_px"]), ("df", row["df"])):
                if value not in group[key]:
                    group[key].append(value)
    return [(x, f"{'/'.join(group['probe'])}\n{x:.1f} px\nDF {'/'.join(map(str, group['df']))}")
            for x, group in sorted(groups.items())]


def thin_tick_labels(fig: Figure, axis, gap_px: float = 4) -> None:
    """Blank the tick labels that would touch a neighbour, keeping the highest resolution's (rightmost)
    first: on a log axis the low-resolution DFs (8×10, 8×9, 7×8) crowd together. Call after the layout."""
    renderer = fig.canvas.get_renderer()
    labels = axis.get_ticklabels()
    boxes = [label.get_window_extent(renderer) for label in labels]
    texts = [label.get_text() for label in labels]
    left_edge = float("inf")
    for k in sorted(range(len(labels)), key=lambda k: -boxes[k].x1):
        if texts[k] and boxes[k].x1 + gap_px > left_edge:
            texts[k] = ""
        elif texts[k]:
            left_edge = boxes[k].x0
    axis.set_ticklabels(texts, fontsize=labels[0].get_fontsize() if labels else None)


def accuracy_figure(runs: list[RunData], different: list[str] = ()) -> Figure:
    """Accuracy (± std over folds as bars, the 95% identity-bootstrap interval as a band where the run has
    one) against the probe's interocular distance, one curve per run, from a fixed floor to 100 %."""
    fig, ax = plt.subplots(figsize=(9, 5.2))
    lowest = ACCURACY_FLOOR
    for run, label in zip(runs, run_labels(runs)):
        table = run.results.sort_values("interocular_px")
        x, accuracy = table["interocular_px"], 100 * table["accuracy_mean"]
        bars = ax.errorbar(x, accuracy, yerr=100 * table["accuracy_std"], marker="o", capsize=3,
                           label=_legend_label(label))
        lowest = min(lowest, (accuracy - 100 * table["accuracy_std"]).min())
        if "accuracy_ci_low" in table and table["accuracy_ci_low"].notna().any():
            ax.fill_between(x, 100 * table["accuracy_ci_low"], 100 * table["accuracy_ci_high"], alpha=0.15,
                            color=bars[0].get_color())
            lowest = min(lowest, 100 * table["accuracy_ci_low"].min())
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"chance ({CHANCE} %)")
    ax.set_ylim(5 * np.floor(lowest / 5), 100.5)
    ax.set_xscale("log")
    ticks = _ticks(runs)
    ax.set_xticks([x for x, _ in ticks])
    ax.set_xticklabels([text for _, text in ticks], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("probe size / interocular distance (px, log scale) / degradation factor")
    ax.set_ylabel("verification accuracy %\nbars: ± std over folds · band: 95 % identity-bootstrap interval",
                  fontsize=8)
    title = " · ".join(filter(None, ("Accuracy vs resolution", _title(*runs))))
    ax.set_title(title + (f"\n{_different_data_note(different)}" if different else ""), fontsize=9,
                 color="#a00" if different else "black")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    fig.tight_layout()
    fig.canvas.draw()
    thin_tick_labels(fig, ax.xaxis)
    return fig


def plot_accuracy(runs: list[RunData], path: Path, different: list[str] = ()) -> None:
    save_figure(accuracy_figure(runs, different), path, also=figure_formats(), layout=False)


def save_figure(fig, path: Path, also: tuple[str, ...] = (), layout: bool = True) -> None:
    """Write the figure as ``path`` (PNG) and, for papers, beside it in the ``also`` formats (e.g. "pdf").

    ``layout`` False keeps a layout the caller has settled (tick labels thinned for it); the canvas is cropped
    to what is drawn either way, legends beside the axes included. Vector files carry no date, so a re-render
    of the same run writes the same bytes."""
    if layout:
        fig.tight_layout()
    for suffix in ("png", *also):
        buffer = io.BytesIO()
        metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(suffix)
        fig.savefig(buffer, format=suffix, dpi=120, bbox_inches="tight", metadata=metadata)
        write_atomic(path.with_suffix(f".{suffix}"), buffer.getvalue())
    plt.close(fig)


def overlay_table(runs: list[RunData]) -> pd.DataFrame:
    """Every run's results.csv rows, led by the run's label and folder: the overlay as one CSV (same columns and
    units as results.csv, see the manifest's "columns")."""
    return pd.concat(
        [run.results.assign(label=label, run=str(run.path)) for run, label in zip(runs, run_labels(runs))]
    ).pipe(lambda table: table[["label", "run", *(c for c in table if c not in ("label", "run"))]])


def render(runs: list[RunData], folder: Path, different: list[str] = ()) -> None:
    """Write both figures (PNG, PDF, SVG) and report.html (``results.REPORT_FILES``) into ``folder``, and for an
    overlay overlay.csv; ``different`` names the data the runs differ in (allowed overlays of different data)."""
    folder = Path(folder)
    plot_roc(runs, folder / ROC_PNG, different)
    plot_accuracy(runs, folder / ACCURACY_PNG, different)
    if len(runs) > 1:
        write_atomic(folder / OVERLAY_CSV, overlay_table(runs).to_csv(index=False))
    write_atomic(folder / REPORT_HTML, html_report(runs, folder, different))


def render_into(runs: list, folder: Path, different: list[str] = (), render: Callable = render,
                files: tuple[str, ...] = OVERLAY_FILES) -> None:
    """Render in a hidden temporary folder inside ``folder``, then move the files into place: a render that
    fails (or is killed) leaves the previous report files as they were, not a new figure beside an old page.
    ``render`` and ``files`` (every file it may write) are those of the runs' kind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in dead_siblings(folder / "report"):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = make_temp_dir(folder, "report")
    try:
        with named_as_target(tmp, folder):  # a full disk names the report's file, not the temporary one
            render(runs, tmp, different)
        for name in files:
            if (tmp / name).exists():
                os.replace(tmp / name, folder / name)
            else:  # an earlier report's file this one does not write (an overlay's CSV, a vector copy not chosen)
                (folder / name).unlink(missing_ok=True)  # would stand beside the new report and mislead
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def render_run(run: RunData, folder: Path) -> None:
    render([run], folder)


def image_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{alt}" src="data:image/png;base64,{data}">'


def _cell(value) -> str:
    """A manifest value as HTML: objects become nested tables (objects of like objects, such as the timings per
    DF, one grid), lists plain text, never raw JSON."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()) and len(
        {tuple(v) for v in value.values()}
    ) == 1:
        fields = list(next(iter(value.values())))
        return _grid(["", *fields], [[name, *(entry[field] for field in fields)] for name, entry in value.items()])
    if isinstance(value, dict):
        return facts_table(value) if value else "–"
    if isinstance(value, list):
        return html.escape(", ".join(_plain(item) for item in value)) if value else "–"
    return html.escape(_plain(value))


def _plain(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "(" + ", ".join(_plain(item) for item in value) + ")"
    return str(value)


def facts_table(facts: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td class='text'>{_cell(v)}</td></tr>" for k, v in facts.items())
    return f"<table>{rows}</table>"


def _grid(header: list[str], rows: list[list], classes: list[str] | None = None) -> str:
    """A plain HTML table; ``classes`` marks rows (e.g. "differs")."""
    head = "".join(f"<th>{html.escape(str(name))}</th>" for name in header)
    body = "".join(
        f"<tr class='{classes[k] if classes else ''}'>" + "".join(f"<td>{_cell(value)}</td>" for value in row) + "</tr>"
        for k, row in enumerate(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _written(run: RunData) -> str:
    """When the run was written: the manifest's stamp, or its file's time for runs written before the stamp."""
    if run.manifest.get("created"):
        return str(run.manifest["created"])
    if run.path is None or not (run.path / MANIFEST).is_file():
        return "–"
    stamp = (run.path / MANIFEST).stat().st_mtime
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC (time of manifest.json)")


def results_html(run: RunData) -> str:
    """The per-DF results with every column's unit in its header: percent except AUC (a fraction 0–1), as in
    the console; intervals in brackets; each TAR@FAR header says how many impostor pairs it rests on."""
    impostors = impostor_pairs(run)
    header = ["DF", "probe px", "interocular px", "accuracy %", "± std (points)", "accuracy 95 % CI %", "AUC (0–1)",
              "AUC 95 % CI", "EER %",
              *(f"TAR % at FAR {_far_text(far)} [95 % CI] (rests on {far * impostors:g} of {impostors} impostor pairs)"
                for far in FARS), "pairs", "embedding norm (XNorm)"]
    rows = [
        [row["df"], row["probe_px"], f"{row['interocular_px']:.2f}", f"{100 * row['accuracy_mean']:.2f}",
         f"{100 * row['accuracy_std']:.2f}", _interval(row, "accuracy", 100, 2) or "–", f"{row['auc']:.4f}",
         _interval(row, "auc") or "–", f"{100 * row['eer']:.2f}",
         *(_tar_cell(row, far) for far in FARS), row.get("pairs", "–"),
         _optional(row.get("embedding_norm"))]
        for row in run.results.to_dict("records")
    ]
    return _grid(header, rows)


def run_record(run: RunData) -> dict:
    """What the run was and where, when, how and with what it ran: the report as the record of the run."""
    manifest, settings, data = run.manifest, run.manifest.get("settings", {}), run.manifest.get("data", {})
    batching = manifest.get("batching", {})
    return {
        "run directory": str(run.path) if run.path else None,
        "written": _written(run),
        "command": manifest.get("command"),
        "backbone": manifest.get("backbone"),
        "weights": manifest.get("weights"),
        "input": manifest.get("input"),
        "device": " · ".join(str(v) for v in (settings.get("device"), batching.get("key", {}).get("device_name"),
                                                settings.get("precision")) if v),
        "batch size": batching.get("batch_size"),
        "data": {key: value for key, value in data.items() if key not in ("crop_cache", "landmarks_source")},
        "degradation": f"{manifest['degradation']['name']}: {manifest['degradation']['description']} "
        f"(degraded: {manifest['degradation']['mode']})",
        "settings": settings,
        "components": manifest.get("components"),
        "versions": manifest.get("versions"),
        "timings": manifest.get("timings"),
        "definitions": manifest.get("definitions"),
        "citation": manifest.get("citation"),
    }


def _flatten(facts: dict, prefix: str = "") -> dict:
    """Nested facts as one level: {"weights: file": ...}."""
    flat = {}
    for key, value in facts.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}: "))
        else:
            flat[prefix + key] = value
    return flat


def side_by_side(runs: list[RunData], labels: list[str]) -> str:
    """Each run's facts in a column, first where they differ, then (folded) where they agree; then accuracy
    and EER per DF and run, with each run's difference from the first."""
    flat = [_flatten({k: v for k, v in run_record(run).items() if k not in ("definitions", "timings")})
            for run in runs]
    names = list(dict.fromkeys(name for facts in flat for name in facts))
    rows = [[name, *(facts.get(name) for facts in flat)] for name in names]
    differs = [row for row in rows if len({_plain(value) for value in row[1:]}) > 1]
    same = [row for row in rows if row not in differs]
    results = []
    for df in sorted({df for run in runs for df in run.results["df"]}):
        rows_at = [run.results[run.results["df"] == df] for run in runs]
        accuracy = [100 * r["accuracy_mean"].iloc[0] if len(r) else None for r in rows_at]
        results.append([df, *(f"{a:.2f}" if a is not None else "–" for a in accuracy),
                        *(f"{a - accuracy[0]:+.2f}" if a is not None and accuracy[0] is not None else "–"
                          for a in accuracy[1:]),
                        *(f"{100 * r['eer'].iloc[0]:.2f}" if len(r) else "–" for r in rows_at)])
    header = ["DF", *(f"{label}: accuracy %" for label in labels),
              *(f"{label} − {labels[0]}: points" for label in labels[1:]), *(f"{label}: EER %" for label in labels)]
    return (
        "<h2>Side by side</h2><h3>Where the runs differ</h3>"
        + _grid(["", *labels], differs, ["differs"] * len(differs))
        + "<details><summary>where they agree</summary>" + _grid(["", *labels], same) + "</details>"
        + "<h3>Results</h3>" + _grid(header, results)
        + f"<p>All rows of every run: {OVERLAY_CSV} (the columns and units of results.csv, led by label and run).</p>"
    )


def column_dictionary() -> str:
    """results.csv's columns with their units: the CSV keeps fractions, the tables here show percent."""
    return "<h2>Columns of results.csv and overlay.csv</h2>" + _grid(
        ["column", "unit", "meaning"], [[name, unit, meaning] for name, (unit, meaning) in RESULT_COLUMNS.items()]
    )


def html_report(runs: list[RunData], folder: Path, different: list[str] = ()) -> str:
    """A single HTML file that stands alone as the record of the run(s): figures embedded, results with units,
    how every number was computed, and what the run ran on, with what, when and how long."""
    labels = run_labels(runs)
    parts = [
        "<!doctype html><meta charset='utf-8'><title>lrbench report</title>",
        HTML_STYLE,
        "<h1>lrbench report</h1>",
        f"<p>rendered {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}</p>",
    ]
    if different:
        parts.append(f"<p class='warning'>{html.escape(_different_data_note(different))}: the curves compare "
                     "models on different faces (overlaid with --allow-different-data).</p>")
    parts += [image_tag(folder / ACCURACY_PNG, "accuracy vs resolution"), image_tag(folder / ROC_PNG, "ROC")]
    if len(runs) > 1:
        parts.append(side_by_side(runs, labels))
    for run, label in zip(runs, labels):
        parts.append(f"<h2>{html.escape(label)} · {html.escape(_title(run))}</h2>")
        parts.append(results_html(run))
        parts.extend(f"<p>{html.escape(tar_basis(run, far))}.</p>" for far in FARS)
        folds = run.folds.pivot(index="fold", columns="df", values="accuracy") * 100
        parts.append("<details><summary>per-fold accuracy % (columns: DF)</summary>")
        parts.append(folds.to_html(float_format=lambda v: f"{v:.2f}"))
        parts.append("</details>")
        parts.append("<h3>Record of the run</h3>" + facts_table(run_record(run)))
    parts.append(column_dictionary())
    return "\n".join(parts) + "\n"
