"""README.md's results tables, generated from the run directories committed under benchmarks/results/.

Every number shown is recomputed from a run's scores.csv with lrbench's own metrics (each reported fold
thresholded on the other folds, as `lrbench run --report-folds` does) and must equal what the run's
results.csv, folds.csv and roc.csv say, so the table cannot drift from the evidence; the comparison of each
row with the first is `lrbench compare`'s, on the same files.

    python benchmarks/results_table.py            # print the block of table.toml
    python benchmarks/results_table.py --check    # exit 1 if README.md's block differs from it
    python benchmarks/results_table.py --write    # rewrite only the blocks of README.md

benchmarks/results/table.toml lists the rows of the block whose start line names no table; a block may name
another file beside it (``<!-- results-table:start table-10fold.toml … -->``). benchmarks/results/README.md
explains the files.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from lrbench.errors import DataError, LrbenchError
from lrbench.fileio import write_atomic
from lrbench.report.compare import compare_runs
from lrbench.report.metrics import VerificationResult
from lrbench.report.results import RESULTS, RunData, load_run, reported_pairs, scores_intervals
from lrbench.report.stats import RESAMPLES, SEED

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "benchmarks" / "results" / "table.toml"
README = REPO / "README.md"
START = re.compile(r"<!-- results-table:start(?: (?P<table>[\w.-]+\.toml))?[^\n]*?-->\n")  # may name its table
END = "<!-- results-table:end -->"
WIDTH = 110  # README.md's prose lines
SHOWN = ("accuracy", "ci", "eer", "auc")  # what a cell may show, in this order (ci: accuracy's interval)


@dataclass(frozen=True)
class Row:
    dir: str  # a folder beside table.toml
    label: str | None  # None: the run's own label


@dataclass(frozen=True)
class TableSpec:
    """table.toml: the runs shown, in order (the first is the baseline of the comparison), and the columns."""

    path: Path
    title: str
    dfs: list[int]
    show: list[str]
    rows: list[Row]
    compare_dfs: list[int]  # the comparison table's rows (Holm's adjustment still covers every common DF)

    def run_dir(self, row: Row) -> Path:
        return self.path.parent / row.dir


@dataclass
class Evidence:
    """A committed run, checked: its metrics recomputed from scores.csv equal its results.csv and folds.csv."""

    run: RunData
    label: str
    metrics: dict[int, VerificationResult]  # per DF, from scores.csv
    intervals: dict[int, tuple[float, float]]  # per DF, accuracy's identity-bootstrap interval (when shown)


def read_spec(path: Path) -> TableSpec:
    """table.toml, checked; every problem is one DataError naming the file and the key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    _no_other_keys(path, raw, ("title", "dfs", "compare_dfs", "show", "rows"), "")
    title, dfs, show = raw.get("title", ""), raw.get("dfs"), raw.get("show", ["accuracy"])
    if not isinstance(title, str):
        raise DataError(f"{path}: 'title' must be text")
    compare_dfs = raw.get("compare_dfs", dfs)
    for key, value in (("dfs", dfs), ("compare_dfs", compare_dfs)):
        if not isinstance(value, list) or not value or not all(type(df) is int and df >= 1 for df in value):
            raise DataError(f"{path}: '{key}' must be a list of degradation factors (integers ≥ 1), got {value!r}")
    if not set(compare_dfs) <= set(dfs):
        raise DataError(f"{path}: 'compare_dfs' must be some of 'dfs', got {compare_dfs!r}")
    if not isinstance(show, list) or not show or not set(show) <= set(SHOWN) or len(set(show)) < len(show):
        raise DataError(f"{path}: 'show' must list some of {', '.join(SHOWN)} once each, got {show!r}")
    if "ci" in show and "accuracy" not in show:
        raise DataError(f"{path}: 'show' has 'ci', the interval of the accuracy, without 'accuracy'")
    rows = raw.get("rows", [])
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise DataError(f"{path}: 'rows' must be [[rows]] tables")
    parsed = []
    for k, row in enumerate(rows):
        where = f"rows[{k}]"
        _no_other_keys(path, row, ("dir", "label"), where + ".")
        folder, label = row.get("dir"), row.get("label")
        if not isinstance(folder, str) or not folder or folder in (".", "..") or "/" in folder or "\\" in folder:
            raise DataError(f"{path}: {where}.dir must name a folder beside {path.name}, got {folder!r}")
        if label is not None and not isinstance(label, str):
            raise DataError(f"{path}: {where}.label must be text")
        if folder in (earlier.dir for earlier in parsed):
            raise DataError(f"{path}: {where}.dir {folder!r} is listed twice")
        parsed.append(Row(folder, label))
    shown = [name for name in SHOWN if name in show]
    return TableSpec(path, title, sorted(set(dfs)), shown, parsed, sorted(set(compare_dfs)))


def _no_other_keys(path: Path, table: dict, known: tuple[str, ...], prefix: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise DataError(f"{path}: unknown key {prefix}{unknown[0]} (known: {', '.join(known)})")


def load_evidence(spec: TableSpec) -> list[Evidence]:
    """Every row's run directory, loaded and cross-checked, with the DFs the table shows."""
    evidence = []
    for row in spec.rows:
        run = load_run(spec.run_dir(row))  # checked: its folds, results and ROC follow from its scores.csv
        metrics = run.recomputed
        missing = [df for df in spec.dfs if df not in metrics]
        if missing:
            raise DataError(f"{run.path / RESULTS}: no DF {', '.join(map(str, missing))}, which {spec.path} shows")
        intervals = {df: accuracy_interval(run, df, metrics[df]) for df in spec.dfs} if "ci" in spec.show else {}
        evidence.append(Evidence(run, row.label or run.label, metrics, intervals))
    return evidence


def accuracy_interval(run: RunData, df: int, result: VerificationResult) -> tuple[float, float]:
    """Accuracy's 95 % identity-bootstrap interval at ``df``, recomputed from scores.csv with the run's fold
    thresholds (as ``lrbench run`` computes it); it must equal the interval results.csv holds."""
    found = scores_intervals(run.scores[run.scores["df"] == df], result.fold_ids, result.fold_threshold, ())
    low, high = found["accuracy_ci_low"], found["accuracy_ci_high"]
    stored = run.results.loc[run.results["df"] == df].iloc[0]
    if not (abs(stored.get("accuracy_ci_low", float("nan")) - low) <= 1e-9
            and abs(stored.get("accuracy_ci_high", float("nan")) - high) <= 1e-9):
        raise DataError(f"{run.path / RESULTS}: DF {df}: accuracy interval [{stored.get('accuracy_ci_low')}, "
                        f"{stored.get('accuracy_ci_high')}], but its scores.csv gives [{low:.10g}, {high:.10g}]")
    return low, high


def _folds_text(run: RunData, result: VerificationResult) -> str:
    ids = [int(fold) for fold in result.fold_ids]
    if len(ids) == run.scores["fold"].nunique():
        return f"{len(ids)} folds"
    return f"fold{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"


def _probe(run: RunData, df: int) -> str:
    return str(run.results.loc[run.results["df"] == df, "probe_px"].iloc[0])


def _cell(result: VerificationResult, interval: tuple[float, float] | None, show: list[str], bold: bool) -> str:
    parts = {"accuracy": f"{100 * result.accuracy_mean:.2f} %", "eer": f"EER {100 * result.eer:.1f} %",
             "auc": f"AUC {result.auc:.4f}"}
    shown = [parts[name] for name in show if name != "ci"]
    if bold:
        shown[0] = f"**{shown[0]}**"
    if interval is not None:
        shown[0] += f" [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]"
    return shown[0] + (f" ({', '.join(shown[1:])})" if len(shown) > 1 else "")


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def results_table(spec: TableSpec, evidence: list[Evidence], links_from: Path) -> list[str]:
    """One row per run, one column per DF; the best accuracy of each column in bold."""
    first = evidence[0]
    reported = first.metrics[spec.dfs[0]]
    folds = _folds_text(first.run, reported)
    corner = f"{spec.title} {folds} ({reported_pairs(first.run, spec.dfs[0], reported)} pairs)"
    probes = {df: sorted({_probe(item.run, df) for item in evidence}) for df in spec.dfs}  # one, unless crops differ
    headers = [f"DF {df} ({probes[df][0]})" if len(probes[df]) == 1 else f"DF {df}" for df in spec.dfs]
    best = {df: max(f"{100 * item.metrics[df].accuracy_mean:.2f}" for item in evidence) for df in spec.dfs}
    lines = [f"| {_escape(corner.strip())} | {' | '.join(headers)} |", "|---" * (len(spec.dfs) + 1) + "|"]
    for item in evidence:
        link = Path(os.path.relpath(Path(item.run.path).resolve(), links_from.resolve())).as_posix()
        cells = []
        for df in spec.dfs:
            result = item.metrics[df]
            bold = "accuracy" in spec.show and len(evidence) > 1 and f"{100 * result.accuracy_mean:.2f}" == best[df]
            probe = "" if len(probes[df]) == 1 else f" at {_probe(item.run, df)}"
            cells.append(_cell(result, item.intervals.get(df), spec.show, bold) + probe)
        lines.append(f"| [{_escape(item.label)}]({link}/) | {' | '.join(cells)} |")
    rule = first.run.manifest.get("settings", {}).get("threshold_rule", "exact")
    accuracy = f"Accuracy on {folds}" if folds.startswith("fold") else f"Accuracy: the mean over {folds}"
    note = (f"{accuracy}, each fold's threshold chosen on the other folds ({rule} rule); every number recomputed "
            "from the linked run's `scores.csv` by `benchmarks/results_table.py`, which checks it against the run's "
            "`results.csv` and `folds.csv`.")
    if "ci" in spec.show:
        note += (f" In brackets: the accuracy's 95 % interval from {RESAMPLES} identity-bootstrap resamples (seed "
                 f"{SEED}; the people are drawn with replacement, each fold keeping its threshold).")
    if any("cross_validation" in item.run.manifest for item in evidence):
        note += (" A merged cross-validated run holds only held-out scores: its folds' thresholds, chosen by each "
                 "fold's own model, are taken from its `folds.csv`.")
    return [*lines, "", *_paragraph(note)]


def _paragraph(text: str) -> list[str]:
    """Prose below a table, wrapped as README.md's own paragraphs are."""
    return textwrap.wrap(text, WIDTH, break_long_words=False, break_on_hyphens=False)


def _delta(delta: dict) -> str:
    value, low, high = (delta[key] for key in ("value", "ci_low", "ci_high"))
    return "–" if value is None else f"{100 * value:+.2f}" + (
        "" if low is None or high is None else f" [{100 * low:+.2f}, {100 * high:+.2f}]")


def comparison_table(spec: TableSpec, evidence: list[Evidence]) -> list[str]:
    """Each later row against the first at the DFs shown, as ``lrbench compare`` computes it on these runs."""
    payload = compare_runs([item.run for item in evidence])  # lrbench compare's resamples and seed
    labels = {str(item.run.path): item.label for item in evidence}
    base = evidence[0].label
    lines = [f"Each run against {_escape(base)}, on the same pairs (`lrbench compare`):", "",
             "| DF (probe) | run | Δ accuracy, points [95 % CI] | b / c | McNemar p | p Holm |",
             "|---|---|---|---|---|---|"]
    for row in payload["comparisons"]:
        if row["df"] in spec.compare_dfs:
            lines.append(f"| {row['df']} ({row['probe_px']}) | {_escape(labels[row['run']])} | "
                         f"{_delta(row['delta']['accuracy'])} | {row['only_base_right']} / {row['only_run_right']} | "
                         f"{row['mcnemar_p']:.3g} | {row['mcnemar_p_holm']:.3g} |")
    note = (f"b / c: pairs only {_escape(base)} / only the run gets right; McNemar: exact two-sided; p Holm: "
            f"adjusted over all {len(payload['comparisons'])} tests (every run at each DF the runs share: "
            f"{', '.join(map(str, payload['dfs']))}); Δ = run − {_escape(base)}, with a 95 % interval from "
            f"{payload['resamples']} resamples of the people (seed {payload['seed']}).")
    return [*lines, "", *_paragraph(note)]


def generate(spec: TableSpec, links_from: Path) -> str:
    """The text between README.md's results-table markers."""
    if not spec.rows:
        return f"_No results yet: {spec.path.name} lists no run directory._\n"
    evidence = load_evidence(spec)
    lines = results_table(spec, evidence, links_from)
    if len(evidence) > 1:
        lines += ["", *comparison_table(spec, evidence)]
    return "\n".join(lines) + "\n"


def blocks(text: str, readme: Path, table: Path) -> list[tuple[Path, int, int]]:
    """README.md's results-table blocks: the table file each is generated from (the one its start line names,
    beside ``table``; else ``table``) and the span of text between its markers."""
    found = []
    for start in START.finditer(text):
        end = text.find(END, start.end())
        if end < 0:
            raise DataError(f"{readme}: a results-table block has no '{END}' line below its start")
        found.append((table.parent / start["table"] if start["table"] else table, start.end(), end))
    if not found:
        raise DataError(f"{readme}: no results-table block (a line '<!-- results-table:start … -->' and, "
                        f"below it, '{END}')")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=TABLE, help="the rows and columns of a block that names no "
                        "table file, beside which the files blocks name are (default: %(default)s)")
    parser.add_argument("--readme", type=Path, default=README, help="the file holding the blocks "
                        "(default: %(default)s)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="exit 1 if a README block is not what is generated")
    action.add_argument("--write", action="store_true", help="rewrite the README's blocks")
    args = parser.parse_args(argv)
    try:
        if not (args.check or args.write):
            print(generate(read_spec(args.table), args.readme.parent), end="")
            return 0
        try:
            text = args.readme.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{args.readme}: cannot read: {exc}") from None
        found = [(table, start, end, generate(read_spec(table), args.readme.parent))
                 for table, start, end in blocks(text, args.readme, args.table)]
        if args.write:
            for _, start, end, block in reversed(found):
                text = text[:start] + block + text[end:]
            write_atomic(args.readme, text)
            print(f"{args.readme}: results tables written from {', '.join(str(item[0]) for item in found)}")
            return 0
        stale = [table for table, start, end, block in found if text[start:end] != block]
        for table in stale:
            print(f"{args.readme}: its results table is not what benchmarks/results_table.py generates from "
                  f"{table}; run `python benchmarks/results_table.py --write`", file=sys.stderr)
        return 1 if stale else 0
    except LrbenchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
