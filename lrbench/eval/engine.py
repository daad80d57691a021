"""The evaluation engine: crops once, features per DF for unique images only, scores, metrics."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .. import registry
from ..data.align import TemplateConversion
from ..data.crops import decoded_image, default_cache_dir, load_crops, max_image_pixels
from ..data.degrade import image_seeds, parse_dfs, probe_size
from ..data.detection import detected_landmarks, load_detector, missing_landmarks_message
from ..data.identification_layout import identification_counts
from ..data.landmarks import landmarks_for
from ..data.protocols import load_protocol
from ..errors import DataError, UsageError
from ..fileio import sha256_file
from ..options import parse_options
from ..plugins import plugin_origin
from ..progress import ProgressMode, progress_bar
from ..ranges import parse_ranges
from ..report.metrics import THRESHOLD_RULES, evaluate_verification
from ..report.results import RunData, definitions
from ..report.stats import result_intervals
from ..specs import (
    FLIP_FUSIONS,
    BackboneSpec,
    CropTemplate,
    DegradationSpec,
    IdentificationSet,
    InputSpec,
    PairSet,
    ProtocolSpec,
)
from .allocator import tune_allocator
from .batching import BatchSizer, memory_key, parse_batch_size
from .distributed import Ranks, main_first, resolve_device
from .identification import DEFINITIONS as IDENTIFICATION_DEFINITIONS
from .identification import IDENTIFICATION_DEGRADED
from .models import build_backbone, weights_file
from .precision import PRECISIONS, autocast_for, require_finite

MODES = ("both", "probe")
# The seed project's evaluation; with ``preset="seed"`` the backbone's ``seed_input`` normalisation is used too.
SEED_PRESET = {"degradation": "seed", "mode": "both", "fusion": "concat", "threshold_rule": "grid"}
PRESETS = ("lrbench", "seed")
BLOCK_VALUES = 1 << 23  # input values (32 MiB in fp32) degraded and normalised at a time, ahead of small batches


@dataclass
class EvalSettings:
    """Everything ``lrbench run`` needs; the resolved copy goes into the manifest."""

    backbone: str
    data: Path | None  # the image folder; a .bin protocol holds its images and needs none
    dfs: str = "1"
    weights: str | None = None
    options: tuple[str, ...] = ()  # backbone options as name=value
    protocol: str = "lfw-view2"
    pairs: Path | None = None
    landmarks: Path | None = None
    aligned: bool = False
    aligned_template: str | None = None  # the framing pre-aligned images have; None: the protocol's, or inferred
    detector: str | None = None  # detect landmarks with this detector (no landmark file needed)
    detector_options: tuple[str, ...] = ()  # detector options as name=value
    detector_weights: Path | None = None
    degradation: str = "bicubic"
    degradation_options: tuple[str, ...] = ()  # degradation options as name=value
    mode: str = "both"
    fusion: str | None = None  # None: the backbone's preference
    threshold_rule: str = "exact"
    report_folds: str | None = None  # e.g. "1": report only these folds (1-based), thresholds from the others
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False
    preset: str = "lrbench"  # "seed": evaluate with the backbone's seed-project input normalisation
    batch_size: int | str = "auto"  # faces per batch, or auto: measured once and remembered (batching.py)
    label: str | None = None  # the run's name in reports; None: backbone and weights file
    workers: int = 2
    seed: int = 0  # a random degradation's seed: each image's own randomness derives from it (degrade.image_seeds)
    cache_dir: Path | None = field(default_factory=default_cache_dir)  # None: no crop cache
    show_progress: ProgressMode | bool = "bar"  # bar, lines or off: see progress.progress_mode


def fuse(features: torch.Tensor, flipped: torch.Tensor | None, fusion: str) -> torch.Tensor:
    """Combine a face's features with its mirror image's: concatenate (the seed), add, or ignore."""
    if fusion == "concat":
        return torch.cat([features, flipped], dim=1)
    if fusion == "sum":
        return features + flipped
    return features


class FeatureExtractor:
    """Runs one network over the crops of a protocol at any DF, batch by batch, on one device.

    Each batch and its mirror image go through the network in one call; ``precision`` bf16/fp16 runs it
    under autocast; ``channels_last`` stores images and convolution weights NHWC, which suits oneDNN on
    CPUs and tensor cores on GPUs.
    """

    def __init__(
        self,
        model,
        crops: np.ndarray,
        spec: InputSpec,
        degrade,
        fusion: str,
        batch_size: int | str | BatchSizer,
        device: torch.device,
        show_progress: ProgressMode | bool = "bar",
        precision: str = "fp32",
        channels_last: bool = False,
        names: Sequence[str] | None = None,
        seed: int = 0,
    ):
        """``names`` (the crops' image names) and ``seed`` give each image its own randomness where ``degrade``
        takes ``seeds`` (a random degradation); without names such a degradation draws from torch's generator."""
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=self.memory_format).eval()
        self.crops, self.spec, self.degrade = crops, spec, degrade
        self.fusion, self.device = fusion, device
        self.batching = batch_size if isinstance(batch_size, BatchSizer) else BatchSizer.choose(batch_size, None, None)
        self.show_progress = show_progress
        self._stage_time: dict[int, tuple[int, float]] = {}  # df → faces computed, seconds
        self.precision = precision
        self.autocast = autocast_for(device, precision)
        self._hr: torch.Tensor | None = None
        self._hr_done = np.zeros(len(crops), dtype=bool)
        self.names, self.seed = names, seed
        self.seeded = names is not None and "seeds" in _parameters(degrade)
        self._seeds: dict[int, np.ndarray] = {}  # df → every image's seed
        self._norms: dict[int, tuple[float, int]] = {}  # df → sum of the network's output norms, images
        self._block: tuple | None = None  # df, rows, start, end, degraded faces, mirrors: see _embed_positions

    def features(self, df: int, rows: np.ndarray) -> torch.Tensor:
        """Fused features at ``df`` as an (N, D) tensor whose ``rows`` are filled.

        DF 1 features are kept, so the HR side of a probe-only sweep is computed once.
        """
        if df == 1:
            todo = rows[~self._hr_done[rows]]
            if len(todo):
                self._compute(1, todo)
                self._hr_done[todo] = True
            return self._hr
        return self._compute(df, rows)

    @torch.inference_mode()
    def _compute(self, df: int, rows: np.ndarray) -> torch.Tensor:
        """Features of ``rows`` at ``df`` written batch by batch into their rows of the (N, D) result (made at the
        first batch, when D is known; at DF 1 the kept ``_hr``): no per-DF list of batches to join and scatter."""
        out = self._hr if df == 1 else None
        covered = len(self.crops) == np.unique(rows).size  # every row is written: nothing to zero
        with progress_bar(f"features DF {df}", len(rows), self.show_progress) as steps:
            embed = partial(self._embed_positions, df, rows)
            for positions, batch_features in self.batching.batches(np.arange(len(rows)), embed):
                if out is None:
                    out = (torch.empty if covered else torch.zeros)(len(self.crops), batch_features.shape[1])
                out[torch.from_numpy(rows[positions])] = batch_features
                steps.advance(len(positions))
        self._block = None  # the last block's inputs are not needed any more
        faces, seconds = self._stage_time.get(df, (0, 0.0))
        self._stage_time[df] = (faces + steps.done, seconds + steps.elapsed)
        require_finite(out[torch.from_numpy(rows)], f"features at DF {df}", self.precision)
        if df == 1:
            self._hr = out
        return out

    def embedding_norm(self, df: int) -> float:
        """The mean L2 norm of the network's output (the unmirrored image's, before fusion) at ``df``:
        insightface's XNorm, a cheap sign of a wrong input convention (it moves far from the usual value)."""
        total, count = self._norms.get(df, (0.0, 0))
        return total / count if count else float("nan")

    def _seed_argument(self, df: int, rows: np.ndarray | None) -> dict:
        """``{"seeds": …}`` for a random degradation: the images' own seeds at ``df`` (None without rows)."""
        if not self.seeded:
            return {}
        if rows is None:
            return {"seeds": None}
        if df not in self._seeds:
            self._seeds[df] = image_seeds(self.names, df, self.seed)
        return {"seeds": torch.from_numpy(self._seeds[df][rows])}

    def stage_timings(self) -> dict[str, dict]:
        """Per DF: faces whose features were computed, seconds, and speed counting each face once
        (``faces_per_s``) and counting its mirror image too where that also went through the network."""
        images_per_face = 1 if self.fusion == "none" else 2
        return {
            str(df): {
                "faces": faces,
                "s": seconds,
                "faces_per_s": _per_s(faces, seconds),
                "network_images_per_s": _per_s(faces * images_per_face, seconds),
            }
            for df, (faces, seconds) in self._stage_time.items()
        }

    def _embed_positions(self, df: int, rows: np.ndarray, positions: np.ndarray) -> torch.Tensor:
        """Fused features of ``rows[positions]`` (consecutive positions: one batch), on the CPU.

        The crops are degraded, normalised and mirrored a block of about ``BLOCK_VALUES`` input values at a time,
        ahead of the batches that use them: each tensor operation has a fixed cost (on a busy CPU mostly waking
        the thread pool) that a batch of a few faces would otherwise pay once per batch and per operation. The
        network then runs each batch with its mirror images as one call, as the bare network does.
        """
        start, stop = int(positions[0]), int(positions[-1]) + 1
        block = self._block
        if block is None or block[0] != df or block[1] is not rows or not block[2] <= start < stop <= block[3]:
            width, height = self.spec.template.size
            end = min(len(rows), start + max(stop - start, BLOCK_VALUES // (3 * width * height)))
            block_rows = rows[start:end]
            faces = self._network_input(torch.from_numpy(np.ascontiguousarray(self.crops[block_rows])), df, block_rows)
            mirrors = faces.flip(3) if self.fusion != "none" else None
            block = self._block = (df, rows, start, end, faces, mirrors)
        faces, mirrors = block[4][start - block[2] : stop - block[2]], block[5]
        batch = faces if mirrors is None else torch.cat([faces, mirrors[start - block[2] : stop - block[2]]])
        return self._run_network(batch, df, stop - start).cpu()

    def _network_input(self, crops: torch.Tensor, df: int, rows: np.ndarray | None) -> torch.Tensor:
        """(N, H, W, 3) uint8 crops → the network's (N, 3, H, W) input: degraded at ``df`` (never at DF 1) and
        normalised; ``rows`` (their indices into the protocol's images) give a random degradation each image's seed."""
        # contiguous NCHW (one copy converting and transposing): resizing a channels-last view is ~1.8× slower on CPUs
        batch = crops.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        batch = batch.to(torch.float32, memory_format=torch.contiguous_format)
        if df != 1:
            batch = self.degrade(batch, df, **self._seed_argument(df, rows))
        return self.spec.normalise(batch)

    def _run_network(self, batch: torch.Tensor, df: int, faces: int) -> torch.Tensor:
        """The network on ``faces`` faces (followed by their mirror images unless the fusion is none): fused
        features, and the unmirrored images' norms counted for ``embedding_norm``."""
        with self.autocast:
            feats = self.model(batch.contiguous(memory_format=self.memory_format)).float()
        total, count = self._norms.get(df, (0.0, 0))
        self._norms[df] = (total + float(feats[:faces].norm(dim=1).sum()), count + faces)
        if self.fusion == "none":
            return feats
        return fuse(*feats.chunk(2), self.fusion)


def _parameters(function) -> Mapping[str, inspect.Parameter]:
    """The parameters of a function or of the function a ``partial`` wraps; none where it has no signature."""
    try:
        return inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}


def _per_s(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None


def score_pairs(a: torch.Tensor, b: torch.Tensor, metric: str) -> np.ndarray:
    """Similarity of each row pair: cosine, or the negated Euclidean distance (higher = more alike)."""
    if metric == "cosine":
        return torch.nn.functional.cosine_similarity(a, b, dim=1).numpy().astype(np.float64)
    return (-torch.linalg.vector_norm(a - b, dim=1)).numpy().astype(np.float64)


@dataclass(kw_only=True)
class Prepared:
    """A backbone ready to run over a protocol's aligned crops: what ``run`` and ``embed`` share. Built by keyword
    only: two of its many dicts swapped by position would mislabel a manifest without any error."""

    settings: EvalSettings
    backbone: BackboneSpec
    input_spec: InputSpec
    degradation: DegradationSpec
    degradation_options: dict  # every option apply() is called with, defaults included
    report_folds: list[int] | None
    protocol: ProtocolSpec
    pairs: PairSet
    landmarks_file: Path | None
    dfs: list[int]
    fusion: str
    device: torch.device
    extractor: FeatureExtractor
    cache: dict
    timings: dict  # seconds per stage, and images per second
    backbone_options: dict  # every option build() was called with, defaults included
    origins: dict[str, dict]  # backbone, degradation, protocol → plugin, distribution, version (or file)
    weights_file: Path | None  # the file the network's weights came from, also a default one
    landmarks_source: dict | None = None  # the landmark file and its digest, or the detector that made them
    conversion: TemplateConversion | None = None  # pre-aligned crops: how their framing became the template's

    @property
    def interocular(self) -> float:
        """The eye distance in the full-resolution crops, in pixels: the template's, or that of converted crops."""
        return self.conversion.interocular if self.conversion else self.input_spec.template.interocular

    def manifest(self, command: str = "", processes: int = 1) -> dict:
        """The run's manifest, the one place it is assembled for either kind: what ran, on what data (with the
        hashes that identify it), how, with which versions, and ``command``, the command line that ran it. Its
        paths are absolute here; ``report.rundir.write_run`` writes them portable."""
        settings, pairs = self.settings, self.pairs
        names = {"backbone": self.backbone.name, "degradation": self.degradation.name, "protocol": self.protocol.name}
        components = {kind: {"name": names[kind], **origin} for kind, origin in self.origins.items()}
        components["backbone"]["options"] = self.backbone_options
        provenance = getattr(self.extractor.model, "provenance", None)  # e.g. a model file's input/output names
        if provenance:
            components["backbone"]["provenance"] = provenance
        components["degradation"]["options"] = self.degradation_options
        return {
            "kind": "identification" if isinstance(pairs, IdentificationSet) else "verification",
            "backbone": self.backbone.name,
            "protocol": self.protocol.name,
            "label": settings.label
            or self.backbone.name + (f" ({Path(settings.weights).name})" if settings.weights else ""),
            "settings": {
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
                "data": str(Path(settings.data).resolve()) if settings.data else None,  # paths are named against it
                "dfs": self.dfs,
                "fusion": self.fusion,
                "device": str(self.device),
                "batch_size": self.extractor.batching.size or settings.batch_size,  # the number auto chose
            },
            "batching": self.extractor.batching.describe(),
            "input": {**self.input_spec.describe(),
                      **({"aligned_crops": self.conversion.describe(), "interocular_px": round(self.interocular, 2)}
                         if self.conversion else {})},
            "degradation": {
                "name": self.degradation.name,
                "description": self.degradation.description,
                "settings": {**self.degradation.settings, **self.degradation_options},
                "mode": settings.mode,
                "randomness": (f"per image: seed = sha256(run seed {settings.seed}, DF, image name), the same for an "
                               "image in any batch" if self.degradation.takes_seeds else "no per-image seeds taken"),
            },
            "data": {
                "image_root": str(Path(pairs.root).resolve()),
                **self._protocol_data(),
                "images_sha256": self.cache["images_sha256"],  # every image's path and bytes
                "landmarks_file": str(self.landmarks_file.resolve()) if self.landmarks_file else None,
                "landmarks_sha256": sha256_file(self.landmarks_file),
                "landmarks_source": self.landmarks_source,
                "unique_images": len(pairs.images),
                "crop_cache": self.cache,
            },
            "weights": {
                "value": settings.weights,
                "file": str(self.weights_file) if self.weights_file else None,
                "sha256": sha256_file(self.weights_file),
            },
            "components": components,
            "definitions": self._definitions(),
            "citation": self.protocol.citation,
            "allocator": tune_allocator(),
            "timings": self.timings,
            "processes": processes,
            **({"command": command} if command else {}),
            "versions": versions(),
        }

    def _protocol_data(self) -> dict:
        """The protocol's files and counts: a pairs file, or an identification set's gallery and probes."""
        pairs = self.pairs
        if isinstance(pairs, IdentificationSet):
            return {"protocol_source": str(Path(pairs.source).resolve()), **identification_counts(pairs)}
        return {
            "pairs_file": str(Path(pairs.source).resolve()),
            "pairs_sha256": sha256_file(pairs.source),
            "pairs": int(len(pairs.same)),
            "folds": int(pairs.folds.max() + 1),
        }

    def _definitions(self) -> dict[str, str]:
        settings = self.settings
        stated = definitions(
            self.backbone.metric,
            self.fusion,
            settings.threshold_rule,
            settings.mode,
            None if self.report_folds is None else [fold + 1 for fold in self.report_folds],
        )
        if not isinstance(self.pairs, IdentificationSet):
            return stated
        return {"score": stated["score"], "flip_fusion": stated["flip_fusion"],
                "degraded": IDENTIFICATION_DEGRADED[settings.mode], **IDENTIFICATION_DEFINITIONS}


def _check(settings: EvalSettings) -> None:
    """Option values the CLI cannot check by itself, before any slow work starts."""
    choices = {"mode": MODES, "precision": PRECISIONS, "preset": PRESETS, "threshold_rule": THRESHOLD_RULES}
    for name, allowed in choices.items():
        if getattr(settings, name) not in allowed:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} {getattr(settings, name)}: choose one of {', '.join(allowed)}")
    if settings.fusion is not None and settings.fusion not in FLIP_FUSIONS:
        raise UsageError(f"--fusion {settings.fusion}: choose one of {', '.join(FLIP_FUSIONS)}")
    parse_batch_size(settings.batch_size)
    if settings.data is None and not settings.protocol.endswith(".bin"):
        raise UsageError("--data: needed (the folder holding the images), unless --protocol is a .bin file")


def _check_threshold_rule(settings: EvalSettings, backbone: BackboneSpec, plugin: str) -> None:
    """Refuse the seed's grid rule for a backbone whose scores are not cosine similarities.

    The grid's candidate thresholds are fixed at -1…1 because cosine similarities lie there; negated
    Euclidean distances are at most 0 and have no fixed scale, so a grid over -1…1 misses most of the
    useful thresholds and gives a wrong accuracy without any sign of it. Stretching the grid over the
    observed scores would be a new rule that only approximates ``exact`` and reproduces nothing the seed
    reported, so the grid stays what it was made for (reproducing the seed's cosine numbers) and other
    scores use ``exact``, which works on any scale.
    """
    if settings.threshold_rule == "grid" and backbone.metric != "cosine":
        preset = " (--preset seed picks it unless you give --threshold-rule)" if settings.preset == "seed" else ""
        raise UsageError(
            f"--threshold-rule grid{preset}: the seed's thresholds -1…1 suit cosine scores only, and backbone "
            f"{backbone.name!r} (plugin {plugin!r}) has {backbone.metric} scores; use --threshold-rule exact"
        )


def _report_folds(text: str | None, pairs: PairSet) -> list[int] | None:
    """``--report-folds 1``, ``2-10`` or ``1,3`` (1-based, as LFW numbers its folds) → 0-based fold ids."""
    if text is None:
        return None
    n_folds = int(pairs.folds.max()) + 1
    bound = f"the {n_folds} folds of {pairs.source}"
    chosen = parse_ranges(
        text, "--report-folds", unit="fold", low=1, high=n_folds, bound=bound, example="1, 2-10 or 1,3"
    )
    if len(chosen) == n_folds:
        raise UsageError(f"--report-folds {text}: choose some of the folds 1…{n_folds}, not all")
    return [fold - 1 for fold in chosen]


def _landmark_file(settings: EvalSettings, pairs: PairSet, device: torch.device) -> tuple[Path | None, dict | None]:
    """The landmark file to read and where its points come from: ``--landmarks``, the protocol's file, or
    ``--detector`` (which wins over a file found by default: an option given beats a default)."""
    detector_given = settings.detector_options or settings.detector_weights
    if detector_given and not settings.detector:
        flag = "--detector-option" if settings.detector_options else "--detector-weights"
        raise UsageError(f"{flag}: needs --detector NAME")
    if settings.detector and (settings.aligned or settings.landmarks):
        other = "--aligned (aligned crops need no landmarks)" if settings.aligned else "--landmarks (it gives them)"
        raise UsageError(f"--detector {settings.detector}: not with {other}")
    if settings.aligned:
        return None, None
    if settings.detector:
        detector = load_detector(settings.detector, settings.detector_weights, device, settings.detector_options)
        return detected_landmarks(pairs.root, pairs.images, detector, cache_dir=settings.cache_dir,
                                  workers=settings.workers, show_progress=settings.show_progress)
    landmarks_file = Path(settings.landmarks) if settings.landmarks else pairs.landmarks
    if landmarks_file is None:
        raise UsageError(missing_landmarks_message(pairs.root, Path(pairs.source).parent / "landmarks.txt"))
    if not landmarks_file.is_file():
        raise UsageError(f"--landmarks {landmarks_file}: no such file")
    return landmarks_file, {"file": str(landmarks_file.resolve()), "sha256": sha256_file(landmarks_file)}


def aligned_conversion(settings: EvalSettings, pairs: PairSet | IdentificationSet,
                       template: CropTemplate) -> TemplateConversion:
    """How pre-aligned images become ``template`` crops: from the framing ``--aligned-template`` or the protocol
    names, else the one known template of the images' size, else (framing unknown) the template's own
    framing scaled to cover the image, centred. Always a similarity, never a stretch."""
    known = registry.templates()
    name = settings.aligned_template or pairs.aligned_template
    if name:
        if name not in known:
            raise UsageError(f"--aligned-template {name}: unknown crop template; known: {', '.join(sorted(known))}")
        return TemplateConversion(known[name], template, decided="given")
    with decoded_image(Path(pairs.root) / pairs.images[0], max_image_pixels()) as image:
        size = image.size
    matches = [known_template for known_template in known.values() if known_template.size == size]
    if len(matches) == 1:
        return TemplateConversion(matches[0], template, decided=f"inferred from the images' size {size[0]}×{size[1]}")
    return TemplateConversion(template, template, decided="unknown framing: the backbone's own template assumed, "
                              "scaled uniformly to cover each image, centred", assumed=True)


def prepare(settings: EvalSettings) -> Prepared:
    """Resolve names, parse the protocol, build the network and decode/align (or load) every unique crop."""
    _check(settings)
    tune_allocator()
    backbone_entry = registry.entry("backbone", settings.backbone)
    options = backbone_entry.spec.effective_options(parse_options(backbone_entry.spec, settings.options))
    backbone = backbone_entry.spec.with_options(options)  # the input and score these options choose
    _check_threshold_rule(settings, backbone, backbone_entry.plugin)
    degradation_entry = registry.entry("degradation", settings.degradation)
    degradation = degradation_entry.spec
    protocol, protocol_origin = load_protocol(settings.protocol, settings.data, settings.cache_dir,
                                              settings.show_progress)
    origins = {
        "backbone": plugin_origin(backbone_entry.plugin),
        "degradation": plugin_origin(degradation_entry.plugin),
        "protocol": protocol_origin,
    }
    template = backbone.input.template
    dfs = parse_dfs(settings.dfs, template.size)
    device = resolve_device(settings.device)
    if settings.precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA device; use bf16 on CPU")
    input_spec = backbone.seed_input if settings.preset == "seed" and backbone.seed_input else backbone.input
    degradation_options = degradation.effective_options(
        parse_options(degradation, settings.degradation_options, "--degradation-option")
    )
    timings: dict = {}

    started = time.perf_counter()
    pairs = protocol.load(Path(settings.data) if settings.data else None, settings.pairs)
    if getattr(pairs, "aligned", False) and not settings.aligned:  # a .bin or an aligned set: crops already
        if settings.detector or settings.landmarks:
            flag = f"--detector {settings.detector}" if settings.detector else f"--landmarks {settings.landmarks}"
            raise UsageError(f"{flag}: {pairs.source} holds aligned crops, which need no landmarks")
        settings = replace(settings, aligned=True)
    timings["protocol_s"] = time.perf_counter() - started
    if isinstance(pairs, IdentificationSet) and settings.report_folds:
        raise UsageError(f"--report-folds {settings.report_folds}: {protocol.name} is an identification protocol")
    started = time.perf_counter()
    landmarks_file, landmarks_source = _landmark_file(settings, pairs, device)
    if settings.detector:
        timings["detect_s"] = time.perf_counter() - started
    landmarks = landmarks_for(pairs.images, landmarks_file, pairs.root) if landmarks_file else None

    model = build_backbone(backbone, settings.weights, options)
    loaded_from = weights_file(model, settings.weights)
    started = time.perf_counter()
    conversion = aligned_conversion(settings, pairs, template) if landmarks is None else None
    crops, cache = load_crops(
        pairs.root,
        pairs.images,
        template,
        landmarks,
        workers=settings.workers,
        cache_dir=settings.cache_dir,
        show_progress=settings.show_progress,
        conversion=conversion,
    )
    timings["decode_align_s"] = time.perf_counter() - started
    # a cache hit makes this the cache's read speed (data.crop_cache.hit says which)
    timings["decode_align_images_per_s"] = _per_s(len(pairs.images), timings["decode_align_s"])

    if settings.compile:
        model = torch.compile(model)
    fusion = settings.fusion or backbone.flip_fusion
    channels_last = device.type == "cuda" if settings.channels_last is None else settings.channels_last
    mirrored = fusion != "none"
    key = memory_key(backbone.name, options, template.size, device, settings.precision, channels_last, settings.compile,
                     mirrored)
    extractor = FeatureExtractor(
        model,
        crops,
        input_spec,
        partial(degradation.apply, **degradation_options),
        fusion,
        BatchSizer.choose(settings.batch_size, key, settings.cache_dir, fixed=getattr(model, "fixed_batch", None)),
        device,
        settings.show_progress,
        settings.precision,
        channels_last,
        names=pairs.images,
        seed=settings.seed,
    )
    return Prepared(
        settings=settings,
        backbone=backbone,
        input_spec=input_spec,
        degradation=degradation,
        degradation_options=degradation_options,
        report_folds=_report_folds(settings.report_folds, pairs),
        protocol=protocol,
        pairs=pairs,
        landmarks_file=landmarks_file,
        dfs=dfs,
        fusion=fusion,
        device=device,
        extractor=extractor,
        cache=cache,
        timings=timings,
        backbone_options=options,
        origins=origins,
        weights_file=loaded_from,
        landmarks_source=landmarks_source,
        conversion=conversion,
    )


def evaluate(settings: EvalSettings, *, command: str = "", ranks: Ranks | None = None) -> RunData:
    """Run a DF sweep of one backbone on one protocol; returns everything a run directory holds (an
    ``IdentificationRun`` for an identification protocol), its manifest recording ``command``.

    Under torchrun (``ranks``, given for identification only) rank 0 prepares first (filling the crop cache),
    every process embeds a share of the images and rank 0 alone searches and returns the run; the others None."""
    if ranks is None:
        prepared = prepare(settings)
    else:
        with main_first(ranks):
            prepared = prepare(settings)
    if isinstance(prepared.pairs, IdentificationSet):
        from .identification_run import evaluate_identification

        return evaluate_identification(prepared, ranks, command)
    pairs, extractor, timings = prepared.pairs, prepared.extractor, prepared.timings
    template = prepared.backbone.input.template
    first_rows, second_rows = np.unique(pairs.first), np.unique(pairs.second)
    all_rows = np.unique(np.concatenate([first_rows, second_rows]))
    rows, fold_rows, roc_rows, scores = [], [], [], {}
    timings["features_s"] = timings["metrics_s"] = 0.0
    people = pairs.identities or [None] * len(pairs.images)  # None: nobody named (a .bin), pairs resampled
    people_a, people_b = [people[i] for i in pairs.first], [people[i] for i in pairs.second]
    for df in prepared.dfs:
        started = time.perf_counter()
        if settings.mode == "both":
            gallery = probe = extractor.features(df, all_rows)
        else:
            gallery, probe = extractor.features(1, first_rows), extractor.features(df, second_rows)
        score = score_pairs(gallery[pairs.first], probe[pairs.second], prepared.backbone.metric)
        timings["features_s"] += time.perf_counter() - started
        started = time.perf_counter()
        try:
            result = evaluate_verification(
                score, pairs.same, pairs.folds, rule=settings.threshold_rule, report_folds=prepared.report_folds
            )
        except ValueError as exc:
            raise DataError(f"{pairs.source}: cannot score this protocol: {exc}") from exc
        intervals = result_intervals(score, pairs.same, pairs.folds, people_a, people_b, result.fold_ids,
                                     result.fold_threshold, result.tar_at_far)
        timings["metrics_s"] += time.perf_counter() - started
        scores[df] = score
        width, height = probe_size(template.size, df)
        rows.append(
            {
                "df": df,
                "probe_w": width,
                "probe_h": height,
                "probe_px": f"{width}×{height}",
                "interocular_px": round(prepared.interocular * width / template.size[0], 2),
                "accuracy_mean": result.accuracy_mean,
                "accuracy_std": result.accuracy_std,
                "accuracy_sem": result.accuracy_sem,
                "auc": result.auc,
                "eer": result.eer,
                **{f"tar_at_far_{far:g}": tar for far, tar in result.tar_at_far.items()},
                "pairs": int(np.isin(pairs.folds, result.fold_ids).sum()),
                **intervals,
                "embedding_norm": round(extractor.embedding_norm(df), 4),
            }
        )
        for fold, acc, threshold in zip(result.fold_ids, result.fold_accuracy, result.fold_threshold):
            fold_rows.append({"df": df, "fold": int(fold) + 1, "accuracy": acc, "threshold": threshold})
        roc_rows.extend({"df": df, "fpr": f, "tpr": t} for f, t in zip(result.roc_fpr, result.roc_tpr))
    timings["features_by_df"] = extractor.stage_timings()
    return RunData.from_sweep(prepared.manifest(command), rows, fold_rows, roc_rows, scores, pairs)


def versions() -> dict[str, str]:
    """The versions a run's numbers may depend on, and the machine's CPUs and threads. torchvision's is its
    installed distribution's (importing it, which a run of most backbones never needs, costs seconds)."""
    import os
    import platform
    from importlib.metadata import version

    import PIL
    import sklearn

    from ..version import __version__

    return {
        "lrbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
    }


def embed(settings: EvalSettings) -> dict[str, np.ndarray]:
    """Features of every unique image of the protocol at each DF, as arrays for ``np.savez``."""
    prepared = prepare(settings)
    every = np.arange(len(prepared.pairs.images))
    arrays = {"images": np.asarray(prepared.pairs.images), "dfs": np.asarray(prepared.dfs)}
    for df in prepared.dfs:
        arrays[f"features_df{df}"] = prepared.extractor.features(df, every).numpy().astype(np.float32)
    arrays["manifest"] = np.asarray(json.dumps(prepared.manifest(), default=str))  # after: it says the batch used
    return arrays
