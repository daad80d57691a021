"""The ``lrbench`` command line."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from .. import registry
from ..console import print_entries, stdout_console, unclipped_table
from ..errors import LrbenchError, UsageError
from ..options import stack_options
from ..plugins import list_plugins, load_plugins, load_plugins_dir
from ..progress import LINE_INTERVAL_S, ProgressMode, progress_mode, stderr_console
from ..report.formats import figure_formats
from ..version import __version__
from .bin import bin_group
from .common import command_line
from .compare import compare
from .pairs import pairs


class LrbenchGroup(click.Group):
    """Records the command line for manifests; turns lrbench's errors into one line and their exit code."""

    def parse_args(self, ctx, args):
        ctx.meta["lrbench.argv"] = ["lrbench", *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LrbenchError as exc:
            click.echo(f"Error: {exc}", err=True)
            if exc.details:
                click.echo(exc.details, err=True)
            ctx.exit(exc.exit_code)


def _load_plugins_dir(ctx, param, value):
    if value is not None:
        try:
            load_plugins_dir(value)
        except LrbenchError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


@click.group(cls=LrbenchGroup)
@click.version_option(__version__, prog_name="lrbench")
@click.option("--plugins-dir", type=click.Path(path_type=Path, file_okay=False), callback=_load_plugins_dir,
              expose_value=False, is_eager=True,
              help="Load every .py file in this folder as a plugin (also $LRBENCH_PLUGINS_DIR, which can add "
              "commands too).")
def cli():
    """lrbench: how much face verification accuracy is lost at low resolution, and won back."""
    figure_formats()  # a wrong $LRBENCH_FIGURE_FORMATS is refused before any work, not when the report is drawn


def _dfs_option(default: str):
    return click.option("--df", "dfs", default=default, show_default=True,
                        help="Degradation factors: 8, 1-13 or 1,2,4,8 (relative to the backbone's crop).")


def _detector_options(default: str | None):
    """Which face detector finds the landmarks, with its options and weights."""
    detector_help = ("Registered face detector (see `lrbench list detectors`)." if default else
                     "Detect faces with this registered detector when there is no landmark file (e.g. mtcnn); "
                     "detections are cached like crops.")
    return stack_options(
        click.option("--detector", default=default, show_default=bool(default), help=detector_help),
        click.option("--detector-option", "detector_options", multiple=True, metavar="NAME=VALUE",
                     help="A detector option (see `lrbench list detectors`); repeatable."),
        click.option("--detector-weights", type=click.Path(path_type=Path),
                     help="Weights file for the detector (default: the detector's own)."),
    )


# What every command that runs a backbone over a protocol's images needs (run, embed).
_backbone_on_data = stack_options(
    click.option("--backbone", "-b", required=True, help="Registered backbone (see `lrbench list backbones`)."),
    click.option("--weights", "-w", help="Checkpoint for the backbone ('random': untrained, where supported)."),
    click.option("--option", "options", multiple=True, metavar="NAME=VALUE",
                 help="A backbone option, e.g. depth=36 (see `lrbench list backbones`); repeatable."),
    click.option("--data", type=click.Path(path_type=Path),
                 help="Folder holding the images (or their parent, with pairs.txt); not needed for a .bin protocol."),
    click.option("--pairs", type=click.Path(path_type=Path),
                 help="Pairs file; default: the protocol's, in --data or its parent."),
    click.option("--landmarks", type=click.Path(path_type=Path),
                 help="5-point landmark file; default: landmarks.txt beside the pairs file."),
    click.option("--aligned", is_flag=True, help="Images are already aligned crops: converted to the backbone's "
                 "crop by a similarity between the two templates (never stretched), no landmarks."),
    click.option("--aligned-template", metavar="TEMPLATE",
                 help="The crop template aligned images are framed by, e.g. arcface-112x112 (implies --aligned; "
                 "default: the protocol's, else the one template of the images' size, else the backbone's own)."),
    _detector_options(None),
    click.option("--protocol", "-p", default="lfw-view2", show_default=True,
                 help="Registered protocol, or a protocol .toml file."),
    click.option("--degradation", "-d", default="bicubic", show_default=True, help="Registered degradation."),
    click.option("--degradation-option", "degradation_options", multiple=True, metavar="NAME=VALUE",
                 help="A degradation option, e.g. sigma=1.2 (see `lrbench list degradations`); repeatable."),
    click.option("--fusion", type=click.Choice(["concat", "sum", "none"]),
                 help="Flip fusion; default: the backbone's preference."),
    click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 … (auto: cuda if present)."),
    click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
                 help="Network arithmetic (autocast); fp16 needs CUDA."),
    click.option("--channels-last/--no-channels-last", default=None,
                 help="NHWC memory format (default: on for CUDA)."),
    click.option("--compile", is_flag=True, help="torch.compile the network first (pays off on long sweeps)."),
    click.option("--batch-size", default="auto", show_default=True,
                 help="Faces per batch (each with its mirror image), or auto: the fastest, measured on the first "
                 "batches and remembered in the cache folder per backbone, device and precision."),
    click.option("--workers", default=min(4, os.cpu_count() or 1), show_default=True, type=int,
                 help="Threads decoding and aligning images."),
    click.option("--seed", default=0, show_default=True, type=int,
                 help="Seed of a random degradation: each image's randomness derives from it, the image's name and "
                 "the DF, so scores do not depend on the batch size."),
    click.option("--cache-dir", type=click.Path(path_type=Path),
                 help="Crop cache folder (default ~/.cache/lrbench or $LRBENCH_CACHE_DIR)."),
    click.option("--no-cache", is_flag=True, help="Neither read nor write the crop cache."),
    click.option("--quiet", "-q", is_flag=True,
                 help="No progress on stderr (otherwise a bar at a terminal, or else a line per stage and every "
                 f"{LINE_INTERVAL_S:g} s)."),
)


def _refuse_unregistered(options: dict) -> None:
    """A backbone or degradation no plugin registers is refused from the plugins' specs alone, before torch loads:
    a mistyped name costs a fraction of a second, not the seconds of importing the engine."""
    registry.backbone(options["backbone"])
    registry.degradation(options["degradation"])


def _settings(options: dict, show_progress: ProgressMode):
    """EvalSettings from the shared options (consumed from ``options``)."""
    from ..eval.engine import EvalSettings

    no_cache, cache_dir = options.pop("no_cache"), options.pop("cache_dir")
    settings = EvalSettings(**options, show_progress=show_progress)
    settings.aligned = settings.aligned or settings.aligned_template is not None
    if no_cache:
        settings.cache_dir = None
    elif cache_dir:
        settings.cache_dir = cache_dir
    return settings


@cli.command()
@_backbone_on_data
@_dfs_option("1")
@click.option("--mode", type=click.Choice(["both", "probe"]), default="both", show_default=True,
              help="Degrade both images of a pair, or only the second (HR gallery vs LR probe).")
@click.option("--threshold-rule", type=click.Choice(["exact", "grid"]), default="exact", show_default=True,
              help="Per-fold threshold: exact from sorted scores, or the seed's grid.")
@click.option("--report-folds", metavar="FOLDS",
              help="Report only these folds: 1, 1,3 or 2-5 (e.g. 1 for a model trained on View 2 folds 2-10); "
              "thresholds still come from the other folds.")
@click.option("--preset", type=click.Choice(["lrbench", "seed"]), default="lrbench", show_default=True,
              help="seed: evaluate as the seed project did (degradation seed, mode both, fusion concat, grid "
              "threshold, its input normalisation); options given explicitly still win.")
@click.option("--label", help="The run's name in tables, reports and overlays (default: backbone and weights file).")
@click.option("--out", "-o", type=click.Path(path_type=Path),
              help="Run directory; default runs/<time>-<backbone>-<protocol>.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.pass_context
def run(ctx, **options):
    """Evaluate a backbone on a verification or identification protocol across degradation factors.

    On an identification protocol (e.g. lfw-ident) only the probes are degraded unless --mode both is given.
    """
    from dataclasses import replace

    _refuse_unregistered(options)
    from ..data.protocols import protocol_kind
    from ..eval.distributed import start, stop
    from ..eval.engine import SEED_PRESET, evaluate
    from ..report.rundir import claim_run_dir
    from ..report.runs import write

    if options["preset"] == "seed":
        for key, value in SEED_PRESET.items():
            if ctx.get_parameter_source(key) is click.core.ParameterSource.DEFAULT:
                options[key] = value
    as_json, out, overwrite = options.pop("as_json"), options.pop("out"), options.pop("overwrite")
    settings = _settings(options, show_progress=progress_mode(options.pop("quiet")))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out or Path("runs") / f"{stamp}-{settings.backbone}-{Path(settings.protocol).stem}"
    ranks = None
    if protocol_kind(settings.protocol) == "identification":
        if ctx.get_parameter_source("mode") is not click.core.ParameterSource.COMMANDLINE:
            settings.mode = "probe"  # HR enrolment, LR search
        ranks = start(settings.device)  # under torchrun every process embeds a share; rank 0 claims and writes --out
        settings = replace(settings, device=str(ranks.device))
    try:
        if ranks is not None and not ranks.main:
            evaluate(settings, ranks=ranks)
            return
        with claim_run_dir(out, overwrite, command=command_line()):
            run_data = evaluate(settings, command=command_line(), ranks=ranks)
            write(run_data, out, overwrite)
    finally:
        if ranks is not None:
            stop()
    _show([run_data], as_json, f"run directory: {out}  (report: {out / 'report.html'})")


def _show(runs: list, as_json: bool, where: str | None) -> None:
    """The runs' results: as JSON, or a console table per run and where its files are."""
    from ..report.runs import console_table, results_json

    if as_json:
        click.echo(results_json(runs))
        return
    console = stdout_console()
    for run_data in runs:
        console.print(console_table(run_data))
    if where:
        console.print(where)


@cli.command()
@_backbone_on_data
@_dfs_option("1")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="The .npz file to write.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def embed(**options):
    """Write the embedding of every unique image of a protocol (at each DF) to an .npz file.

    Arrays: images (paths relative to the image folder), dfs, features_df<DF> (N × D float32) and
    manifest (JSON text: backbone, input spec, weights, degradation, fusion).
    """
    _refuse_unregistered(options)
    import numpy as np

    from ..eval.engine import embed as embed_features
    from ..fileio import OutputLock, check_writable, write_atomic

    out, overwrite = options.pop("out"), options.pop("overwrite")
    if out.suffix != ".npz":
        raise click.UsageError(f"--out {out}: must end in .npz")
    check_writable(out, "--out", folder=False)
    with OutputLock(out, "--out", command=command_line()):
        _check_embedding_target(out, overwrite)
        arrays = embed_features(_settings(options, show_progress=progress_mode(options.pop("quiet"))))
        write_atomic(out, lambda handle: np.savez(handle, **arrays))
    shapes = ", ".join(f"DF {df}: {arrays[f'features_df{df}'].shape}" for df in arrays["dfs"])
    click.echo(f"wrote {out} ({len(arrays['images'])} images; {shapes})")


@cli.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="The landmark file to write; images without landmarks are listed in <stem>.noface.txt beside it.")
@_detector_options("mtcnn")
@click.option("--pick", type=click.Choice(["center", "largest", "score"]), default="center", show_default=True,
              help="Which face to keep when there are several: nearest the image centre, largest, best score.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 … (auto: cuda if present).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="Images per batch.")
@click.option("--workers", default=min(4, os.cpu_count() or 1), show_default=True, type=click.IntRange(min=1),
              help="Threads decoding images.")
@click.option("--overwrite", is_flag=True, help="Detect again even if --out holds finished landmarks.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def landmarks(data, out, detector, detector_options, detector_weights, pick, device, batch_size, workers, overwrite,
              quiet):
    """Detect the five landmarks of every image under DATA (any depth) and write a landmark file.

    Paths are relative to DATA. An interrupted call keeps what it detected; run the same command again to
    continue.
    """
    from ..data.detection import escape_field, find_images, load_detector, without_landmarks_path, write_landmark_file
    from ..errors import brief_list
    from ..eval.distributed import resolve_device
    from ..fileio import OutputLock, check_writable
    from ..progress import warn

    check_writable(out, "--out", folder=False)
    images = find_images(data)
    with OutputLock(out, "--out", command=command_line()):
        found = load_detector(detector, detector_weights, resolve_device(device), detector_options)
        summary = write_landmark_file(data, images, out, found, pick=pick, batch_size=batch_size, workers=workers,
                                      overwrite=overwrite, show_progress=progress_mode(quiet))
    if summary.already_done:
        click.echo(f"{out}: already holds the landmarks of {data} from these settings; nothing to do "
                   "(--overwrite detects again)")
        return
    if summary.without:
        first = [f"{escape_field(rel)} ({escape_field(why)})" for rel, why in summary.without.items()]
        warn(f"{len(summary.without)} of {summary.images} images have no landmarks (listed in "
             f"{without_landmarks_path(out)}): {brief_list(first, 3)}")
    resumed = f"; {summary.resumed} from the interrupted call before" if summary.resumed else ""
    click.echo(f"wrote {out}: landmarks of {summary.found} of {summary.images} images{resumed}")


_EMBEDDING_ARRAYS = {"images", "dfs", "manifest"}


def _check_embedding_target(out: Path, overwrite: bool) -> None:
    """``--overwrite`` replaces an earlier ``lrbench embed`` output, never another file that happens to be there."""
    import zipfile

    if not out.exists():
        return
    try:
        with zipfile.ZipFile(out) as archive:
            ours = set(archive.namelist()) >= {f"{name}.npy" for name in _EMBEDDING_ARRAYS}
    except (OSError, zipfile.BadZipFile):
        ours = False
    if not ours:
        raise UsageError(f"--out {out}: already exists and is not an lrbench embedding file, so lrbench will not "
                         "replace it; choose another file")
    if not overwrite:
        raise UsageError(f"--out {out}: already exists; choose another file or pass --overwrite")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    help="Where an overlay of several runs goes: figures, report.html and overlay.csv (default "
    "runs/compare-<time>; with --json and no --out nothing is written).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--allow-different-data", is_flag=True,
              help="Overlay runs whose protocol, pairs, images or landmarks differ; the figures and the page say so.")
def report(runs, out, as_json, allow_different_data):
    """Re-render a run directory, or overlay several (e.g. an HR model against its LR student).

    Runs overlaid must have scored the same pairs of the same faces (protocol, pairs, images and landmarks
    hashes in their manifests) unless --allow-different-data is given.
    """
    from ..fileio import OutputLock, check_writable
    from ..report.rundir import check_report_folder
    from ..report.runs import load_all, render_into

    loaded = load_all(runs)  # every run checked before anything is written, all of one kind
    different = _overlay_checked(loaded, allow_different_data)
    target, option = _report_target(loaded, out, as_json)
    if target is not None:
        check_writable(target, option)
        with OutputLock(target, option, command=command_line()):
            if option == "--out":
                check_report_folder(target)
            render_into(loaded, target, different)
    where = None if target is None else (f"report: {target / 'report.html'}"
                                         + (f"  (overlay: {target / 'overlay.csv'})" if len(loaded) > 1 else ""))
    _show(loaded, as_json, where)


def _overlay_checked(loaded: list, allow_different_data: bool) -> list[str]:
    """The data differences between the runs (refused unless allowed, warned when allowed)."""
    from ..progress import warn
    from ..report.render import check_overlay

    different = check_overlay(loaded, allow_different_data)
    if different:
        warn(f"overlaying runs on different data: {'; '.join(different)}")
    return different


def _report_target(loaded: list, out: Path | None, as_json: bool) -> tuple[Path | None, str | None]:
    """Where a report goes and the option that named it: one run's own folder, ``--out`` (default
    runs/compare-<time>), or nowhere for ``--json`` without ``--out`` (nothing lands in the current folder)."""
    if len(loaded) == 1 and out is None:
        return loaded[0].path, "run directory"
    if out is None and as_json:
        return None, None
    return out or Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}", "--out"


@cli.command()
@click.option("--all", "include_builtin", is_flag=True, help="Include lrbench's built-in plugins.")
@click.option("--hook", help="Only plugins implementing this hook, e.g. register_backbones.")
@click.option("--json", "as_json", is_flag=True)
def plugins(include_builtin, hook, as_json):
    """List the loaded plugins, their hooks and versions."""
    rows = list_plugins(include_builtin=include_builtin, hook=hook)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    cells = [
        [
            row["name"],
            row["distribution"] or ("built-in" if row["builtin"] else "-"),
            row["version"] or __version__ if row["builtin"] else row["version"] or "-",
            ", ".join(row["hooks"]),
        ]
        for row in rows
    ]
    table = unclipped_table(
        ["name", "distribution", "version", "hooks"], cells, whole=("name", "version"),
        title="lrbench plugins" + ("" if include_builtin else " (--all adds built-ins)"),
    )
    stdout_console().print(table)


_KINDS = ("backbone", "degradation", "protocol", "trainer", "detector")


def _describe(kind: str, spec, full: bool = False) -> dict:
    """A registered component's key facts; ``full`` gives the complete input spec (for JSON)."""
    if kind == "backbone":
        return {
            "input": _input_of(spec, full),
            "embedding": "from the file" if spec.embedding_dim is None else spec.embedding_size(),
            "score": spec.metric,
            "flip fusion": spec.flip_fusion,
            "weights": "required" if spec.needs_weights else "optional",
            "options": spec.options,
            "checkpoint layouts": ", ".join(spec.checkpoint_layouts),
            "description": spec.description,
        }
    if kind in ("degradation", "detector"):
        return {"options": spec.options, "description": spec.description}
    if kind == "protocol":
        return {"description": spec.description, "expected": spec.expected}
    return {"description": spec.description}


def _input_of(spec, full: bool):
    if spec.specialise is not None:
        return "chosen by --option preset=NAME (or template, channel_order, mean, std)"
    return spec.input.describe() if full else f"{spec.input.template.name} {spec.input.channel_order}"


@cli.command("list")
@click.argument("kind", type=click.Choice([f"{k}s" for k in _KINDS]), required=False)
@click.option("--json", "as_json", is_flag=True)
def list_components(kind, as_json):
    """List registered backbones, degradations, protocols, trainers and detectors with their key metadata."""
    kinds = [kind[:-1]] if kind else list(_KINDS)
    found = {
        f"{k}s": {
            name: {"plugin": entry.plugin, **_describe(k, entry.spec, full=as_json)}
            for name, entry in registry.collect(k).items()
        }
        for k in kinds
    }
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    console = stdout_console()
    for title, entries in found.items():
        print_entries(console, title, {name: {k: str(v) for k, v in info.items()} for name, info in entries.items()})


@cli.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Random seed; the same seed gives the same files.")
@click.option("--folds", default=10, show_default=True)
@click.option(
    "--pairs-per-fold",
    default=30,
    show_default=True,
    help="Same-person pairs per fold (and as many different).",
)
@click.option("--people-per-fold", default=8, show_default=True)
@click.option("--images-per-person", default=4, show_default=True)
@click.option("--train-identities", default=40, show_default=True)
@click.option("--train-images-per-identity", default=10, show_default=True)
def synth(out, **options):
    """Write a synthetic LFW-format test set and CASIA-format training set (no external data needed)."""
    from ..data.synth import synthesize
    from ..fileio import check_writable

    check_writable(out, "OUT")
    paths = synthesize(out, **options)
    click.echo(f"LFW-format set: {paths.lfw_root} (pairs {paths.pairs}, landmarks {paths.lfw_landmarks})")
    click.echo(f"training set:   {paths.train_images} (landmarks {paths.train_landmarks})")


class TrainerGroup(click.Group):
    """``lrbench train <trainer>``: one subcommand per registered trainer."""

    def list_commands(self, ctx):
        return sorted(registry.collect("trainer"))

    def get_command(self, ctx, name):
        found = registry.collect("trainer")
        if name not in found:
            available = ", ".join(sorted(found)) or "none"
            raise click.UsageError(f"unknown trainer {name!r}; available: {available}")
        return found[name].spec.command


@cli.group(cls=TrainerGroup)
def train():
    """Train a backbone with a registered trainer (see `lrbench list trainers`)."""


cli.add_command(pairs)
cli.add_command(compare)
cli.add_command(bin_group)


def _add_plugin_commands() -> None:
    try:
        load_plugins().hook.register_commands(cli=cli)
    except LrbenchError as exc:
        stderr_console.print(f"Error: {exc}")
        sys.exit(exc.exit_code)


def main() -> None:
    _add_plugin_commands()
    cli()
