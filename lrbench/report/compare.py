"""``lrbench compare``: is one model really better than another on the same pairs?

Every run is compared with the first, per DF they share, on the same pairs: McNemar's exact test on the
per-pair decisions (each run keeps its own per-fold thresholds), and paired identity-bootstrap intervals
(``lrbench.report.stats``) for the differences in accuracy, AUC and TAR@FAR. The McNemar p-values of all the
comparisons shown (every run at every DF) are adjusted together with Holm's method.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.table import Table

if TYPE_CHECKING:  # lrbench.report.results brings pandas, imported when the command runs, not when the CLI starts
    from .results import RunData

from ..errors import DataError, UsageError, brief_list
from ..fileio import check_writable, write_atomic
from ..progress import warn
from .formats import FIGURE_FORMATS, figure_formats
from .stats import (
    CONFIDENCE,
    MIN_IMPOSTORS_AT_FAR,
    RESAMPLES,
    SEED,
    IdentityBootstrap,
    PairScores,
    describe,
    fold_decisions,
    holm,
    mcnemar_exact,
    measurable_far,
    percentile_interval,
    resampled,
)

COMPARE_JSON = "compare.json"
DELTA_FIGURE = "delta_accuracy.png"
COMPARE_HTML = "compare.html"
COMPARE_FILES = (COMPARE_JSON, DELTA_FIGURE, *(f"delta_accuracy.{suffix}" for suffix in FIGURE_FORMATS), COMPARE_HTML)
FARS = (1e-3, 1e-2)
METRICS = ("accuracy", "auc", *(f"tar_at_far_{far:g}" for far in FARS))
_UNMEASURABLE_IF = {f"tar_at_far_{far:g}": far for far in FARS}  # metric → its FAR, unmeasurable below one pair
_PAIR_COLUMNS = ["pair", "fold", "same", "image_a", "image_b"]


def _facts(run: RunData) -> dict[str, object]:
    """What must agree for two runs to have scored the same pairs of the same faces the same way."""
    from .render import DATA_FACTS, manifest_fact  # the facts lrbench report checks before overlaying runs

    facts = {name: manifest_fact(run.manifest, keys) for name, keys in DATA_FACTS.items()}
    return {**facts, "reported folds": run.reported_folds}


def check_compatible(base: RunData, other: RunData) -> None:
    """Refuse, in one line naming both runs, runs of different protocols, pairs, landmarks or reported folds."""
    from .results import SCORES

    ours, theirs = _facts(base), _facts(other)
    different = [f"{name} ({ours[name]} vs {theirs[name]})" for name in ours if ours[name] != theirs[name]]
    if different:
        raise UsageError(f"{other.path}: cannot be compared with {base.path}: different {'; '.join(different)}")
    pairs_a = base.scores.loc[base.scores["df"] == base.scores["df"].iloc[0], _PAIR_COLUMNS].sort_values("pair")
    pairs_b = other.scores.loc[other.scores["df"] == other.scores["df"].iloc[0], _PAIR_COLUMNS].sort_values("pair")
    if len(pairs_a) != len(pairs_b) or not (pairs_a.to_numpy() == pairs_b.to_numpy()).all():
        raise UsageError(
            f"{other.path}: cannot be compared with {base.path}: their {SCORES} list different pairs "
            "(same manifests, but the scores were not written for the same pair list)"
        )
    roots = (base.manifest.get("data", {}).get("image_root"), other.manifest.get("data", {}).get("image_root"))
    if ours["images sha256"] is None and roots[0] != roots[1]:  # runs from before the images' digest
        warn(f"{other.path}: its images were read from {roots[1]}, those of {base.path} from {roots[0]}; "
             "compare assumes these are the same images (the pairs and landmarks match)")


# Two runs' rows at one DF are compared only if their probes are the same: the same size and, within this many
# pixels, the same distance between the eyes (a DF means another probe for another crop template).
_IOD_TOLERANCE_PX = 0.05


def common_dfs(runs: list[RunData]) -> list[int]:
    """The DFs every run reports, each the same probe in every run; none in common, or a common DF whose
    probes differ (backbones of different crops), is an error listing what each run has."""
    each = [sorted(int(df) for df in run.results["df"]) for run in runs]
    common = sorted(set(each[0]).intersection(*each[1:]))
    if not common:
        listing = "; ".join(f"{run.path} has {', '.join(map(str, dfs))}" for run, dfs in zip(runs, each))
        raise UsageError(f"no DF common to all runs: {listing}")
    for df in common:
        probes = [_probe(run, df) for run in runs]
        if any(probe[0] != probes[0][0] or abs(probe[1] - probes[0][1]) > _IOD_TOLERANCE_PX for probe in probes):
            listing = "; ".join(f"{run.path}: {size} px, interocular {iod:.2f} px"
                                for run, (size, iod) in zip(runs, probes))
            raise UsageError(f"DF {df} is not the same probe in every run ({listing}): the runs' crops differ, so "
                             "their rows cannot be paired by DF; compare runs of one crop template")
    return common


def _probe(run: RunData, df: int) -> tuple[str, float]:
    """The probe of ``run`` at ``df``: its size (w×h) and interocular distance."""
    row = run.results[run.results["df"] == df].iloc[0]
    return str(row["probe_px"]), float(row["interocular_px"])


def pair_scores(run: RunData, df: int) -> PairScores:
    """The run's scores at ``df`` on its reported pairs, with the decisions of its own fold thresholds."""
    from .results import FOLDS, SCORES

    scores = run.scores[run.scores["df"] == df].sort_values("pair")
    folds = run.folds[run.folds["df"] == df].sort_values("fold")
    if scores.empty or folds.empty:
        missing = SCORES if scores.empty else FOLDS
        raise DataError(f"{run.path / missing}: no rows for DF {df}, which its results.csv reports")
    fold = scores["fold"].to_numpy()
    reported = np.isin(fold, folds["fold"].to_numpy())
    same = scores["same"].to_numpy().astype(bool)
    decided = fold_decisions(scores["score"], fold, folds["fold"], folds["threshold"])
    return PairScores(scores["score"].to_numpy()[reported], same[reported], (decided == same)[reported])


@dataclass
class Comparison:
    """One run against the baseline at one DF."""

    label: str
    run: str
    df: int
    probe_px: str  # the probe size at this DF, the same in both runs (``common_dfs``)
    interocular_px: float  # the probe's interocular distance, the same in both runs
    pairs: int
    impostors: int
    accuracy_base: float
    accuracy: float
    only_base_right: int
    only_run_right: int
    mcnemar_p: float
    delta: dict[str, dict[str, float | None]]  # metric -> value, ci_low, ci_high (run − baseline); None: undefined
    mcnemar_p_holm: float = float("nan")  # set once every test of the comparison is known


def compare_runs(runs: list[RunData], resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Everything ``lrbench compare`` shows, as JSON-ready data (see ``--json``)."""
    if len(runs) < 2:
        raise UsageError(f"RUNS: compare needs at least two run directories, got {len(runs)}")
    from .results import pair_people

    base, others = runs[0], runs[1:]
    for other in others:
        check_compatible(base, other)
    labels = _labels(runs)
    dfs = common_dfs(runs)
    pairs = base.scores[base.scores["df"] == dfs[0]].sort_values("pair")
    reported = np.isin(pairs["fold"], base.reported_folds)
    people_a, people_b = pair_people(pairs[reported])
    bootstrap = IdentityBootstrap(people_a, people_b, resamples, seed)
    rows = []
    for df in dfs:
        models = [pair_scores(run, df) for run in runs]
        estimates = [model.metrics(np.ones(len(model.scores)), FARS) for model in models]
        samples = resampled(bootstrap, models, FARS)
        probe_px, interocular_px = _probe(base, df)
        for run, model, estimate, sample in zip(others, models[1:], estimates[1:], samples[1:]):
            only_base = int((models[0].correct & ~model.correct).sum())
            only_run = int((~models[0].correct & model.correct).sum())
            delta = {}
            for metric in METRICS:
                low, high = percentile_interval(sample[metric] - samples[0][metric])
                value = estimate[metric][0] - estimates[0][metric][0]
                if metric in _UNMEASURABLE_IF and not measurable_far(_UNMEASURABLE_IF[metric], len(model.same)
                                                                     - int(model.same.sum())):
                    value = low = high = float("nan")  # a FAR below one impostor pair: no TAR, no difference
                delta[metric] = {key: None if np.isnan(number) else float(number)  # JSON has no NaN
                                 for key, number in (("value", value), ("ci_low", low), ("ci_high", high))}
            rows.append(Comparison(
                label=labels[str(run.path)], run=str(run.path), df=df, probe_px=probe_px,
                interocular_px=interocular_px, pairs=len(model.scores),
                impostors=int((~model.same).sum()), accuracy_base=float(estimates[0]["accuracy"][0]),
                accuracy=float(estimate["accuracy"][0]), only_base_right=only_base, only_run_right=only_run,
                mcnemar_p=mcnemar_exact(only_base, only_run), delta=delta,
            ))
    for row, adjusted in zip(rows, holm([row.mcnemar_p for row in rows])):
        row.mcnemar_p_holm = float(adjusted)
    return {
        "baseline": {"run": str(base.path), "label": labels[str(base.path)]},
        "runs": [{"run": str(run.path), "label": labels[str(run.path)]} for run in others],
        "dfs": dfs,
        "resamples": resamples,
        "seed": seed,
        "confidence": CONFIDENCE,
        "definitions": {
            "delta": "run − baseline, on the baseline's reported pairs; accuracy pooled over those pairs with each "
            "run's own per-fold thresholds (equal to the mean fold accuracy when folds are equal in size)",
            "mcnemar": "exact two-sided McNemar test on the per-pair decisions: only_base_right (b) and "
            "only_run_right (c) are the discordant pairs; p = min(1, 2·P(X ≤ min(b, c))), X ~ Binomial(b + c, 1/2)",
            "multiple_comparisons": f"mcnemar_p_holm: Holm's step-down adjustment over all {len(rows)} tests shown "
            "(every run against the baseline at every common DF)",
            "intervals": describe(resamples, seed, run=False) + "; the same resamples for every run (a paired "
            "bootstrap), the interval being that of the resampled differences",
        },
        "comparisons": [asdict(row) for row in rows],
    }


def _labels(runs: list[RunData]) -> dict[str, str]:
    """Each run's label, with its folder's name added where two runs share a label (two runs of one backbone)."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.label] = counts.get(run.label, 0) + 1
    return {str(run.path): run.label if counts[run.label] == 1 else f"{run.label} ({run.path.name})" for run in runs}


def _signed(value: float | None, scale: float, digits: int) -> str:
    return "–" if value is None else f"{scale * value:+.{digits}f}"


def _delta_text(delta: dict, scale: float = 1.0, digits: int = 3, between: str = " ") -> str:
    """"+2.50 [-1.20, +6.10]": the difference and its interval (``between`` "\n" stacks them in the console)."""
    return (f"{_signed(delta['value'], scale, digits)}{between}[{_signed(delta['ci_low'], scale, digits)}, "
            f"{_signed(delta['ci_high'], scale, digits)}]")


def _thin_tail(payload: dict) -> list[str]:
    """Sentences for the TAR@FAR differences that rest on fewer than ``MIN_IMPOSTORS_AT_FAR`` impostor pairs."""
    notes = []
    impostors = min(row["impostors"] for row in payload["comparisons"])
    for far in FARS:
        if far * impostors < MIN_IMPOSTORS_AT_FAR:
            notes.append(f"TAR@FAR {far:g} rests on {far * impostors:g} of {impostors} impostor pairs "
                         f"(fewer than {MIN_IMPOSTORS_AT_FAR}): read its difference and interval with care")
    return notes


def console_table(payload: dict) -> Table:
    """One row per run and DF: accuracies, Δ with intervals, McNemar counts and p-values (raw and Holm)."""
    table = Table(title=f"each run against the baseline {payload['baseline']['label']}, run directory "
                  f"{payload['baseline']['run']}",
                  title_justify="left", caption_justify="left")
    for column in ("DF", "probe px", "IOD px", "run", "accuracy %", "Δacc points", "b / c", "McNemar p", "p Holm",
                   "ΔAUC", "ΔTAR@FAR 1e-3", "ΔTAR@FAR 1e-2"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in payload["comparisons"]:
        delta = row["delta"]
        table.add_row(
            str(row["df"]), row["probe_px"], f"{row['interocular_px']:.2f}", row["label"],
            f"{100 * row['accuracy_base']:.2f} → {100 * row['accuracy']:.2f}",
            _delta_text(delta["accuracy"], 100, 2, "\n"),
            f"{row['only_base_right']} / {row['only_run_right']}",
            f"{row['mcnemar_p']:.3g}", f"{row['mcnemar_p_holm']:.3g}",
            *(_delta_text(delta[metric], between="\n") for metric in METRICS[1:]),
        )
    table.caption = "\n".join([
        f"Δ = run − baseline [{100 * payload['confidence']:g}% identity-bootstrap interval: {payload['resamples']} "
        f"resamples of people, seed {payload['seed']}]; accuracy pooled over the pairs, each run's fold thresholds",
        "b / c: pairs only the baseline / only the run gets right; McNemar: exact two-sided; p Holm: adjusted over "
        f"the {len(payload['comparisons'])} tests shown",
        *_thin_tail(payload),
    ])
    return table


def plot_delta_accuracy(payload: dict, path: Path, also: tuple[str, ...]) -> None:
    """Δaccuracy (points, with its interval) against the DF, one series per run; zero = no difference."""
    from .render import plt, save_figure  # report chooses matplotlib's file-only backend

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    dfs, runs = payload["dfs"], payload["runs"]
    for k, run in enumerate(runs):
        rows = [row for row in payload["comparisons"] if row["run"] == run["run"]]
        delta = np.array([[row["delta"]["accuracy"][key] for key in ("value", "ci_low", "ci_high")] for row in rows],
                         dtype=float)  # None (undefined) → NaN, not drawn
        offset = (k - (len(runs) - 1) / 2) * 0.08
        ax.errorbar(np.arange(len(rows)) + offset, 100 * delta[:, 0],
                    yerr=100 * np.abs(delta[:, 1:].T - delta[:, 0]), marker="o", capsize=3, linestyle="-",
                    label=run["label"])
    probe = {row["df"]: row["probe_px"] for row in payload["comparisons"]}
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(dfs)))
    ax.set_xticklabels([f"DF {df}\n{probe[df]}" for df in dfs], fontsize=7)
    ax.set_xlabel(f"degradation factor (probe size of {payload['baseline']['label']}); resolution falls →")
    ax.set_ylabel(f"Δ accuracy, points (run − {payload['baseline']['label']})")
    ax.set_title(f"Accuracy difference with {100 * payload['confidence']:g}% identity-bootstrap intervals")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, also=also)


def html_report(payload: dict, folder: Path) -> str:
    """compare.html: the figure, the table, and how every number was computed."""
    from .render import HTML_STYLE, image_tag

    header = ["DF", "probe px", "IOD px", "run", "accuracy % (base → run)", "Δacc pts [95% CI]", "only base right",
              "only run right", "McNemar p", "p Holm", "ΔAUC [95% CI]", "ΔTAR@1e-3 [95% CI]", "ΔTAR@1e-2 [95% CI]"]
    rows = [
        [row["df"], row["probe_px"], f"{row['interocular_px']:.2f}", row["label"],
         f"{100 * row['accuracy_base']:.2f} → {100 * row['accuracy']:.2f}",
         _delta_text(row["delta"]["accuracy"], 100, 2),
         row["only_base_right"], row["only_run_right"], f"{row['mcnemar_p']:.3g}", f"{row['mcnemar_p_holm']:.3g}",
         _delta_text(row["delta"]["auc"]), _delta_text(row["delta"]["tar_at_far_0.001"]),
         _delta_text(row["delta"]["tar_at_far_0.01"])]
        for row in payload["comparisons"]
    ]
    cell = "<td>{}</td>".format
    runs = [payload["baseline"], *payload["runs"]]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>lrbench compare</title>",
        HTML_STYLE,
        f"<h1>lrbench compare: each run against {html.escape(payload['baseline']['label'])}</h1>",
        "<ul>" + "".join(f"<li>{html.escape(run['label'])}: {html.escape(run['run'])}</li>" for run in runs) + "</ul>",
        image_tag(folder / DELTA_FIGURE, "accuracy difference vs resolution"),
        "<table><tr>" + "".join(f"<th>{html.escape(name)}</th>" for name in header) + "</tr>",
        *("<tr>" + "".join(cell(html.escape(str(value))) for value in row) + "</tr>" for row in rows),
        "</table><table>",
        *(f"<tr><th>{html.escape(key)}</th><td style='text-align:left'>{html.escape(text)}</td></tr>"
          for key, text in payload["definitions"].items()),
        "</table>",
        *(f"<p>{html.escape(note)}</p>" for note in _thin_tail(payload)),
    ]
    return "\n".join(parts) + "\n"


def check_compare_out(out: Path) -> None:
    """``--out`` is a new folder, an empty one, or an earlier comparison's; never someone else's files."""
    from .results import is_own_file

    check_writable(out, "--out")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder; choose another folder")
    foreign = [entry.name for entry in sorted(out.iterdir()) if not is_own_file(entry, COMPARE_FILES)] if (
        out.is_dir()) else []
    if foreign:
        raise UsageError(f"--out {out}: holds {brief_list(foreign)}, which lrbench compare did not write; "
                         "choose a new or empty folder")


def write_outputs(payload: dict, out: Path) -> None:
    """compare.json, the figure (PNG and ``figure_formats()``'s copies) and compare.html, each written atomically;
    a copy an earlier comparison left in a format not chosen now is removed."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / COMPARE_JSON, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    chosen = figure_formats()
    plot_delta_accuracy(payload, out / DELTA_FIGURE, chosen)
    for suffix in set(FIGURE_FORMATS) - set(chosen):
        (out / DELTA_FIGURE).with_suffix(f".{suffix}").unlink(missing_ok=True)
    write_atomic(out / COMPARE_HTML, html_report(payload, out))
