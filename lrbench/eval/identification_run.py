"""``lrbench run`` on an identification protocol: the DF sweep, its run directory and its console table."""

from __future__ import annotations

import contextlib
import html
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.table import Table

from ..data.degrade import probe_size
from ..errors import DataError, UsageError
from ..fileio import OutputLock, built_in_place, check_writable, dead_siblings, write_atomic
from ..report.render import HTML_STYLE, image_tag, save_figure
from .distributed import Ranks, any_rank, gather_rows
from .feature_cache import GalleryFeatures, gallery_key
from .identification import FPIRS, RANKS, TOP, Search, cmc, generated_distractors, search_set, summary

MANIFEST, RESULTS, RANKS_CSV, CMC_CSV = "manifest.json", "results.csv", "ranks.csv", "cmc.csv"
CMC_PNG, RANK1_PNG, REPORT_HTML = "cmc.png", "rank1_vs_resolution.png", "report.html"
RUN_FILES = (MANIFEST, RESULTS, RANKS_CSV, CMC_CSV, CMC_PNG, RANK1_PNG, REPORT_HTML)
OVERLAY_CSV = "overlay.csv"
KIND = "identification"


@dataclass
class IdentificationRun:
    """Everything an identification run directory holds, as tables."""

    manifest: dict
    results: pd.DataFrame  # one row per DF (and probe group)
    ranks: pd.DataFrame  # one row per mated probe and DF
    cmc: pd.DataFrame  # df, k, accuracy
    path: Path | None = None  # the run directory it was read from

    @property
    def label(self) -> str:
        return self.manifest.get("label") or self.manifest.get("backbone", "run")


def evaluate_identification(prepared, ranks: Ranks | None = None) -> IdentificationRun | None:
    """Probes at each DF (gallery at DF 1 unless ``--mode both``), searched chunk by chunk on the device.

    The gallery's DF 1 features come from the feature cache when an earlier run of the same network on the same
    images left them there (``timings.gallery_features`` says which). Under torchrun (``ranks``) each process
    embeds its share of the images and rank 0 gathers them, searches and returns the run; the other ranks
    return None.
    """
    ident, extractor, settings, timings = prepared.pairs, prepared.extractor, prepared.settings, prepared.timings
    main = ranks is None or ranks.main
    template = prepared.backbone.input.template
    gallery_rows = np.concatenate([np.asarray(ident.gallery), np.asarray(ident.distractors if ident.distractors
                                                                         is not None else [], dtype=np.int64)])
    probe_rows = np.concatenate([np.asarray(ident.probes), np.asarray(ident.non_mated if ident.non_mated
                                                                      is not None else [], dtype=np.int64)])
    groups = np.asarray(ident.probe_groups) if ident.probe_groups is not None else None
    enrolled = np.unique(gallery_rows)
    cache = GalleryFeatures(settings.cache_dir, prepared.backbone.name, gallery_key(prepared, enrolled))
    enrolled_hr = generated = None  # the gallery's DF 1 features, read or computed once; generated distractors
    rows, rank_tables, cmc_tables = [], [], []
    timings["features_s"] = timings["search_s"] = 0.0
    for df in prepared.dfs:
        started = time.perf_counter()
        if settings.mode == "both" and df != 1:
            gallery_features = _features(extractor, df, enrolled, ranks)
        else:
            if enrolled_hr is None:
                enrolled_hr = _enrolled_features(extractor, enrolled, cache, ranks, timings)
            gallery_features = enrolled_hr
        probe_features = _features(extractor, df, np.unique(probe_rows), ranks)
        if main and ident.generated_distractors and (generated is None or settings.mode == "both"):
            generated = generated_distractors(gallery_features[torch.as_tensor(enrolled)], ident.generated_distractors)
        timings["features_s"] += time.perf_counter() - started
        if not main:
            continue
        started = time.perf_counter()
        mated, non_mated, search_rows = search_set(ident, gallery_features, probe_features, prepared.backbone.metric,
                                                   prepared.device, settings.show_progress, f"search DF {df}",
                                                   generated)
        timings["search_s"] += time.perf_counter() - started
        width, height = probe_size(template.size, df)
        size = {"df": df, "probe_w": width, "probe_h": height, "probe_px": f"{width}×{height}",
                "interocular_px": round(template.interocular * width / template.size[0], 2)}
        rows.append({**size, "group": "all", **summary(mated, non_mated)})
        if groups is not None:
            rows.extend({**size, "group": g, **summary(mated, non_mated, groups == g)} for g in sorted(set(groups)))
        rank_tables.append(_ranks(df, ident, mated, search_rows, groups))
        curve = cmc(mated.rank, len(search_rows))
        cmc_tables.append(pd.DataFrame({"df": df, "k": np.arange(1, len(curve) + 1), "accuracy": curve}))
    if not main:
        return None
    timings["features_by_df"] = extractor.stage_timings()
    manifest = {"kind": KIND, **prepared.manifest(), "processes": 1 if ranks is None else ranks.world}
    return IdentificationRun(manifest, pd.DataFrame(rows), pd.concat(rank_tables), pd.concat(cmc_tables))


def _features(extractor, df: int, rows: np.ndarray, ranks: Ranks | None) -> torch.Tensor:
    """The (N, D) feature table with ``rows`` filled; under torchrun every rank computes rows ``rank::world``
    and all of them are gathered."""
    if ranks is None or not ranks.distributed:
        return extractor.features(df, rows)
    mine = rows[ranks.rank :: ranks.world]
    local = extractor.features(df, mine)[torch.as_tensor(mine)]
    gathered = gather_rows(ranks, local.to(ranks.device), len(rows)).cpu()
    table = torch.zeros(len(extractor.crops), gathered.shape[1])
    table[torch.as_tensor(rows)] = gathered
    return table


def _enrolled_features(extractor, rows: np.ndarray, cache: GalleryFeatures, ranks: Ranks | None,
                       timings: dict) -> torch.Tensor:
    """The gallery's DF 1 features (a table over every image, ``rows`` filled): the cache's when it holds them
    (on every process), else computed and stored."""
    started = time.perf_counter()
    cached = cache.load(len(rows))
    if ranks is not None and any_rank(ranks, cached is None):  # all processes compute, or none
        cached, cache.note["hit"] = None, False
    if cached is not None:
        table = torch.zeros(len(extractor.crops), cached.shape[1])
        table[torch.as_tensor(rows)] = torch.from_numpy(cached)
    else:
        table = _features(extractor, 1, rows, ranks)
        if ranks is None or ranks.main:
            cache.store(table[torch.as_tensor(rows)].numpy())
    timings["gallery_features"] = {"entries": len(rows), "s": time.perf_counter() - started, "cache": cache.note}
    return table


def _ranks(df: int, ident, mated: Search, search_rows: np.ndarray, groups) -> pd.DataFrame:
    """Per mated probe: its image, true identity, the true identity's rank and the best TOP entries."""
    entry_ids = list(ident.gallery_ids) + [""] * (len(search_rows) - len(ident.gallery_ids))  # distractors: ""
    table = {"df": df, "probe": [ident.images[i] for i in ident.probes], "true_id": list(ident.probe_ids)}
    if groups is not None:
        table["group"] = groups
    table["rank"] = pd.array([int(r) if np.isfinite(r) else None for r in mated.rank], dtype="Int64")
    for j in range(TOP):
        index = mated.top_index[:, j]
        table[f"top{j + 1}_id"] = [entry_ids[i] if i >= 0 else "" for i in index]
        table[f"top{j + 1}_image"] = [_entry_name(ident, search_rows[i]) if i >= 0 else "" for i in index]
        table[f"top{j + 1}_score"] = np.where(index >= 0, mated.top_scores[:, j], np.nan)
    return pd.DataFrame(table)


def _entry_name(ident, row: int) -> str:
    """A search gallery entry's image, or which generated distractor it is."""
    return ident.images[row] if row < len(ident.images) else f"generated distractor {row - len(ident.images) + 1}"


@contextlib.contextmanager
def claim_identification_dir(out: Path, overwrite: bool, command: str = "") -> Iterator[None]:
    """Refuse an ``--out`` that is not new, not empty or (with ``--overwrite``) not an identification run
    directory, before the evaluation starts; hold the output's lock until the run is in place."""
    out = Path(out)
    check_writable(out, "--out")
    with OutputLock(out, "--out", command=command):
        for leftover in dead_siblings(out):
            shutil.rmtree(leftover, ignore_errors=True)
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            raise UsageError(f"--out {out}: is a link or a file, not a run directory; choose another folder")
        if out.exists() and any(out.iterdir()):
            foreign = [p.name for p in sorted(out.iterdir()) if p.name not in RUN_FILES]
            if foreign or _kind(out) != KIND:
                raise UsageError(f"--out {out}: already exists and is not an lrbench identification run directory, "
                                 "so lrbench will not replace it; choose another folder")
            if not overwrite:
                raise UsageError(f"--out {out}: already exists; choose another folder or pass --overwrite")
        yield


def is_identification_run(folder: Path) -> bool:
    """Whether ``folder``'s manifest says it is an identification run (what ``lrbench report`` dispatches on)."""
    return _kind(Path(folder)) == KIND


def _kind(folder: Path) -> str | None:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def write_identification_run(run: IdentificationRun, out: Path) -> Path:
    """Write every file into a temporary sibling, then swap it into place (no half-written run is seen)."""
    out = Path(out)
    with built_in_place(out) as tmp:
        write_atomic(tmp / MANIFEST, json.dumps(run.manifest, indent=2, default=str) + "\n")
        write_atomic(tmp / RESULTS, run.results.to_csv(index=False))
        write_atomic(tmp / RANKS_CSV, run.ranks.to_csv(index=False, float_format="%.8g"))
        write_atomic(tmp / CMC_CSV, run.cmc.to_csv(index=False, float_format="%.8g"))
        plot_cmc(run, tmp / CMC_PNG)
        plot_rank1([run], tmp / RANK1_PNG)
        write_atomic(tmp / REPORT_HTML, html_report(run, tmp))
    return out


def plot_cmc(run: IdentificationRun, path: Path) -> None:
    import matplotlib.pyplot as plt

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


def plot_rank1(runs: list[IdentificationRun], path: Path, note: str = "") -> None:
    """Rank-1 against the probes' interocular distance, a curve per run (and probe group)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for run in runs:
        for group, rows in run.results.groupby("group", sort=False):
            ax.plot(rows["interocular_px"], 100 * rows["rank1"], marker="o", label=f"{run.label} · {group}")
    ax.set_xlabel("probe interocular distance (px)")
    ax.set_ylabel("rank-1 %")
    ax.set_title("Rank-1 vs resolution" + (f"\n{note}" if note else ""), color="darkred" if note else "black")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _percent_columns() -> list[str]:
    return [f"rank{k}" for k in RANKS] + [f"tpir_at_fpir_{f:g}" for f in FPIRS]


def html_report(run: IdentificationRun, folder: Path) -> str:
    """One self-contained page: both figures, the results and the definitions behind them."""
    manifest = run.manifest
    table = run.results.copy()
    for column in _percent_columns():
        table[column] = (100 * table[column]).round(2)
    facts = {
        "protocol": f"{manifest.get('protocol')}: {manifest.get('citation') or ''}",
        "data": json.dumps({k: v for k, v in manifest.get("data", {}).items() if k != "crop_cache"}),
        "degradation": f"{manifest['degradation']['name']}: {manifest['degradation']['description']}",
        "input": json.dumps(manifest.get("input")),
        "weights": json.dumps(manifest.get("weights")),
        **manifest.get("definitions", {}),
        "command": manifest.get("command"),
    }
    parts = [
        "<!doctype html><meta charset='utf-8'><title>lrbench identification report</title>",
        HTML_STYLE,
        f"<h1>{html.escape(run.label)} · {html.escape(str(manifest.get('protocol')))} (identification)</h1>",
        image_tag(folder / CMC_PNG, "CMC"),
        image_tag(folder / RANK1_PNG, "rank-1 vs resolution"),
        "<p>rank-k and TPIR@FPIR in %</p>",
        table.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="–"),
        "<table>",
        *(f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(str(v))}</td></tr>"
          for k, v in facts.items()),
        "</table>",
    ]
    return "\n".join(parts) + "\n"


def console_table(run: IdentificationRun) -> Table:
    """Per DF (and group): probe size, rank-1/5/10/20 and TPIR@FPIR, in percent."""
    manifest = run.manifest
    title = (f"{run.label} on {manifest.get('protocol')} (identification) · {manifest['degradation']['name']} · "
             f"mode {manifest['degradation']['mode']}")
    table = Table(title=title, title_justify="left")
    grouped = run.results["group"].nunique() > 1
    columns = ["DF", *(["group"] if grouped else []), "probe px", "IOD px", *(f"rank-{k} %" for k in RANKS),
               *(f"TPIR@FPIR {f:g} %" for f in FPIRS)]
    for column in columns:
        table.add_column(column, justify="right")
    for row in run.results.to_dict("records"):
        values = [f"{100 * row[c]:.2f}" if row[c] == row[c] else "–" for c in _percent_columns()]
        table.add_row(str(row["df"]), *([row["group"]] if grouped else []), row["probe_px"],
                      f"{row['interocular_px']:.1f}", *values)
    return table


def results_json(run: IdentificationRun) -> str:
    return json.dumps({"label": run.label, "protocol": run.manifest.get("protocol"),
                       "results": run.results.to_dict("records")}, indent=2, default=str)


def load_identification_run(path: Path) -> IdentificationRun:
    """An identification run directory read back; a missing or unreadable file is one error naming it."""
    path = Path(path)
    if _kind(path) != KIND:
        raise UsageError(f"{path}: not an lrbench identification run directory")
    tables = []
    for name in (RESULTS, RANKS_CSV, CMC_CSV):
        try:
            tables.append(pd.read_csv(path / name, keep_default_na=False, na_values=[""]))
        except (OSError, ValueError) as exc:
            raise DataError(f"{path / name}: cannot read it ({exc})") from None
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    return IdentificationRun(manifest, *tables, path=path)


def render_identification(runs: list[IdentificationRun], target: Path, different: list[str]) -> None:
    """One run: its figures and report.html again, in its folder. Several: the rank-1 curves of all in one
    figure, ``overlay.csv`` (every run's results rows, led by label and run) and a report with each table."""
    foreign = [p.name for p in sorted(target.iterdir())] if target.is_dir() else []
    foreign = [name for name in foreign if name not in (*RUN_FILES, OVERLAY_CSV) and not name.startswith(".")]
    if foreign:
        raise UsageError(f"--out {target}: holds {', '.join(foreign[:5])}, which lrbench did not write")
    target.mkdir(parents=True, exist_ok=True)
    if len(runs) == 1:
        plot_cmc(runs[0], target / CMC_PNG)
        plot_rank1(runs, target / RANK1_PNG)
        write_atomic(target / REPORT_HTML, html_report(runs[0], target))
        return
    note = f"NOTE: runs on DIFFERENT data ({'; '.join(different)})" if different else ""
    plot_rank1(runs, target / RANK1_PNG, note)
    overlay = pd.concat([run.results.assign(label=run.label, run=str(run.path)) for run in runs])
    write_atomic(target / OVERLAY_CSV, overlay[["label", "run", *runs[0].results.columns]].to_csv(index=False))
    parts = ["<!doctype html><meta charset='utf-8'><title>lrbench identification overlay</title>", HTML_STYLE,
             "<h1>Identification runs overlaid</h1>",
             *([f"<p style='color:darkred'>{html.escape(note)}</p>"] if note else []),
             image_tag(target / RANK1_PNG, "rank-1 vs resolution"), "<p>rank-k and TPIR@FPIR in %</p>"]
    for run in runs:
        table = run.results.copy()
        for column in _percent_columns():
            table[column] = (100 * table[column]).round(2)
        parts += [f"<h2>{html.escape(run.label)} ({html.escape(str(run.path))})</h2>",
                  table.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="–")]
    write_atomic(target / REPORT_HTML, "\n".join(parts) + "\n")
