"""An identification run: its tables, the checks of what they say of each other, its figures (CMC, rank-1 vs
resolution), its report and its console table. The directory itself is ``rundir``'s, as for verification."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from ..errors import DataError
from ..fileio import write_atomic
from .render import (
    HTML_STYLE,
    facts_table,
    image_tag,
    plt,
    run_labels,
    run_record,
    save_figure,
)
from .rundir import (
    CMC_CSV,
    CMC_PNG,
    IDENTIFICATION,
    OVERLAY_CSV,
    RANK1_PNG,
    RANKS_CSV,
    REPORT_HTML,
    RESULTS,
    read_run_files,
)

KIND = IDENTIFICATION.kind
# results.csv is stored exactly (shortest repr), cmc.csv with 8 significant digits
COUNT_TOLERANCE = 1e-9
CMC_TOLERANCE = 1e-7


@dataclass
class IdentificationRun:
    """Everything an identification run directory holds, as tables."""

    manifest: dict
    results: pd.DataFrame  # one row per DF (and probe group)
    ranks: pd.DataFrame  # one row per mated probe and DF
    cmc: pd.DataFrame  # df, k, accuracy
    path: Path | None = None  # the run directory it was read from
    layout = IDENTIFICATION

    @property
    def label(self) -> str:
        return self.manifest.get("label") or self.manifest.get("backbone", "run")

    def tables(self) -> dict[str, pd.DataFrame]:
        return {RESULTS: self.results, RANKS_CSV: self.ranks, CMC_CSV: self.cmc}


def rank_columns(table: pd.DataFrame) -> dict[str, int]:
    """results.csv's rank-k columns and their k ("rank1": 1, …)."""
    return {column: int(match.group(1)) for column in table
            if (match := re.fullmatch(r"rank(\d+)", str(column)))}


def percent_columns(table: pd.DataFrame) -> list[str]:
    """The rate columns results.csv holds as fractions: rank-k and TPIR@FPIR."""
    return [*rank_columns(table), *(column for column in table if str(column).startswith("tpir_at_fpir_"))]


def load_identification_run(path: Path) -> IdentificationRun:
    """An identification run directory read back, checked like a verification run: any damage (a missing, unreadable
    or malformed file, a results.csv or cmc.csv that ranks.csv does not give) is one DataError naming the file."""
    manifest, tables = read_run_files(path, KIND)
    run = IdentificationRun(manifest, *tables.values(), path=Path(path))
    check_derived(run)
    return run


def check_derived(run: IdentificationRun) -> None:
    """Refuse a run whose results.csv (rank-k, probes) or cmc.csv is not what its ranks.csv gives: per DF and
    probe group, the fraction of mated probes found within the first k entries (a probe without a rank is a miss)."""
    path = Path(run.path)
    ranks_file = path / RANKS_CSV
    found = sorted(int(df) for df in run.ranks["df"].unique())
    for name, table in ((RESULTS, run.results), (CMC_CSV, run.cmc)):
        listed = sorted(int(df) for df in table["df"].unique())
        if listed != found:
            raise DataError(f"{path / name}: reports DFs {listed}, but {ranks_file} has ranks for DFs {found}")
    for row in run.results.to_dict("records"):
        at_df = run.ranks[run.ranks["df"] == row["df"]]
        if row["group"] != "all":
            if "group" not in at_df:
                raise DataError(f"{path / RESULTS}: DF {row['df']} reports probe group {row['group']!r}, but "
                                f"{ranks_file} has no group column")
            at_df = at_df[at_df["group"] == row["group"]]
        rank = at_df["rank"].to_numpy(dtype=float, na_value=np.inf)
        what = f"DF {row['df']} group {row['group']}"
        _agree(path / RESULTS, f"{what} probes", row["probes"], len(rank), 0, ranks_file)
        for column, k in rank_columns(run.results).items():
            expected = float(np.mean(rank <= k)) if len(rank) else float("nan")
            if not (np.isnan(expected) and np.isnan(row[column])):
                _agree(path / RESULTS, f"{what} {column}", row[column], expected, COUNT_TOLERANCE, ranks_file)
    for df, curve in run.cmc.groupby("df"):
        rank = run.ranks.loc[run.ranks["df"] == df, "rank"].to_numpy(dtype=float, na_value=np.inf)
        if not len(rank):
            continue
        for k, accuracy in zip(curve["k"], curve["accuracy"]):
            _agree(path / CMC_CSV, f"DF {df} k {k} accuracy", accuracy, np.mean(rank <= k), CMC_TOLERANCE, ranks_file)


def _agree(file: Path, what: str, stored, recomputed, tolerance: float, source: Path) -> None:
    if not abs(float(stored) - float(recomputed)) <= tolerance:  # NaN never agrees
        raise DataError(f"{file}: {what} is {float(stored):.10g}, but {source} gives {float(recomputed):.10g}; "
                        "these files are not the output of one run")


# -- figures ---------------------------------------------------------------------------------------------------------


def plot_cmc(run: IdentificationRun, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for df, curve in run.cmc.groupby("df"):
        probe_px = run.results.loc[run.results["df"] == df, "probe_px"].iloc[0]
        ax.plot(curve["k"], 100 * curve["accuracy"], label=f"DF {df} ({probe_px})")
    ax.set_xscale("log")
    ax.set_xlabel("rank k")
    ax.set_ylabel("identification rate %")
    ax.set_title(f"CMC · {run.label}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_rank1(runs: list[IdentificationRun], path: Path, different: list[str] = ()) -> None:
    """Rank-1 against the probes' interocular distance, a curve per run (and probe group)."""
    note = f"NOTE: runs on DIFFERENT data ({'; '.join(different)})" if different else ""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for run, label in zip(runs, run_labels(runs)):
        for group, rows in run.results.groupby("group", sort=False):
            ax.plot(rows["interocular_px"], 100 * rows["rank1"], marker="o", label=f"{label} · {group}")
    ax.set_xlabel("probe interocular distance (px)")
    ax.set_ylabel("rank-1 %")
    ax.set_title("Rank-1 vs resolution" + (f"\n{note}" if note else ""), color="darkred" if note else "black")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


# -- report, console, JSON -------------------------------------------------------------------------------------------


def _results_html(run: IdentificationRun) -> str:
    table = run.results.copy()
    for column in percent_columns(table):
        table[column] = (100 * table[column]).round(2)
    return "<p>rank-k and TPIR@FPIR in %</p>" + table.to_html(index=False, float_format=lambda v: f"{v:.4f}",
                                                                na_rep="–")


def render(runs: list[IdentificationRun], folder: Path, different: list[str] = ()) -> None:
    """One run: its CMC, rank-1 vs resolution and report.html. Several: the rank-1 curves of all in one figure,
    ``overlay.csv`` (every run's results rows, led by label and run) and a report with each run's table and
    record. Every fact of a run is an HTML table, never raw JSON."""
    folder = Path(folder)
    labels = run_labels(runs)
    plot_rank1(runs, folder / RANK1_PNG, different)
    parts = ["<!doctype html><meta charset='utf-8'><title>lrbench identification report</title>", HTML_STYLE]
    if len(runs) == 1:
        plot_cmc(runs[0], folder / CMC_PNG)
        run = runs[0]
        parts += [f"<h1>{html.escape(run.label)} · {html.escape(str(run.manifest.get('protocol')))} "
                  "(identification)</h1>", image_tag(folder / CMC_PNG, "CMC")]
    else:
        overlay = pd.concat([run.results.assign(label=label, run=str(run.path)) for run, label in zip(runs, labels)])
        write_atomic(folder / OVERLAY_CSV, overlay[["label", "run", *runs[0].results.columns]].to_csv(index=False))
        parts.append("<h1>Identification runs overlaid</h1>")
    if different:
        parts.append(f"<p class='warning'>NOTE: runs on DIFFERENT data ({html.escape('; '.join(different))}): the "
                     "curves compare models on different faces (overlaid with --allow-different-data).</p>")
    parts.append(image_tag(folder / RANK1_PNG, "rank-1 vs resolution"))
    for run, label in zip(runs, labels):
        if len(runs) > 1:
            parts.append(f"<h2>{html.escape(label)}</h2>")
        parts += [_results_html(run), "<h3>Record of the run</h3>", facts_table(run_record(run))]
    write_atomic(folder / REPORT_HTML, "\n".join(parts) + "\n")


def console_table(run: IdentificationRun) -> Table:
    """Per DF (and group): probe size, rank-k and TPIR@FPIR, in percent."""
    manifest = run.manifest
    title = (f"{run.label} on {manifest.get('protocol')} (identification) · {manifest['degradation']['name']} · "
             f"mode {manifest['degradation']['mode']}")
    table = Table(title=title, title_justify="left")
    grouped = run.results["group"].nunique() > 1
    rates = percent_columns(run.results)
    names = {**{column: f"rank-{k} %" for column, k in rank_columns(run.results).items()},
             **{column: f"TPIR@FPIR {column.removeprefix('tpir_at_fpir_')} %" for column in rates
                if column.startswith("tpir")}}
    for column in ["DF", *(["group"] if grouped else []), "probe px", "IOD px", *(names[c] for c in rates)]:
        table.add_column(column, justify="right")
    for row in run.results.to_dict("records"):
        values = [f"{100 * row[c]:.2f}" if row[c] == row[c] else "–" for c in rates]
        table.add_row(str(row["df"]), *([row["group"]] if grouped else []), row["probe_px"],
                      f"{row['interocular_px']:.1f}", *values)
    return table


def results_entry(run: IdentificationRun) -> dict:
    """The run's results for ``--json`` (no NaN in JSON: a missing rate is null)."""
    return {"run": str(run.path) if run.path else None, "kind": KIND, "label": run.label,
            "protocol": run.manifest.get("protocol"), "definitions": run.manifest.get("definitions"),
            "results": run.results.astype(object).where(run.results.notna(), None).to_dict("records")}
