"""What a plugin registers: plain dataclasses, so a plugin reads as a declaration."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch only for the hints: declaring a spec must not load it (the CLI starts without torch)
    import torch

FLIP_FUSIONS = ("concat", "sum", "none")
METRICS = ("cosine", "euclidean")


@dataclass(frozen=True)
class CropTemplate:
    """Where the five landmarks (left eye, right eye, nose, left/right mouth corner) land in the crop."""

    name: str
    size: tuple[int, int]  # (width, height) in pixels
    points: tuple[tuple[float, float], ...]

    @property
    def interocular(self) -> float:
        """Distance between the eye centres in crop pixels."""
        (lx, ly), (rx, ry) = self.points[0], self.points[1]
        return math.hypot(rx - lx, ry - ly)


SPHEREFACE_96x112 = CropTemplate(
    "sphereface-96x112",
    (96, 112),
    ((30.2946, 51.6963), (65.5318, 51.5014), (48.0252, 71.7366), (33.5493, 92.3655), (62.7299, 92.2041)),
)
ARCFACE_112x112 = CropTemplate(
    "arcface-112x112",
    (112, 112),
    ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041)),
)


@dataclass(frozen=True)
class InputSpec:
    """How a backbone wants its input: crop template, channel order and normalisation of 0…255 pixels."""

    template: CropTemplate
    channel_order: str = "RGB"  # "RGB" or "BGR"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)

    def __post_init__(self):
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', not {self.channel_order!r}")

    def normalise(self, rgb: torch.Tensor) -> torch.Tensor:
        """Float NCHW RGB batch in 0…255 → the network's input (channel order, mean, std)."""
        import torch

        x = rgb.flip(1) if self.channel_order == "BGR" else rgb
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def describe(self) -> dict[str, Any]:
        return {
            "template": self.template.name,
            "crop_size": list(self.template.size),
            "template_points": [list(p) for p in self.template.points],
            "interocular_px": round(self.template.interocular, 2),
            "channel_order": self.channel_order,
            "mean": list(self.mean),
            "std": list(self.std),
        }


class _Options:
    """Keyword options declared with their defaults: the one source of what a run passes to the function.

    lrbench always calls the function with every declared option (defaults filled in), so the manifest
    records exactly what ran; where the function has a default of its own it must equal the declared one,
    so calling the function directly gives the same thing. A disagreement is refused when the spec is made,
    which inside a ``register_*`` hook is an error naming the plugin.
    """

    def effective_options(self, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """The declared defaults overridden by ``given`` (parsed ``--option`` values)."""
        return {**self.options, **(given or {})}

    def _check_options(self, kind: str, role: str, function: Callable) -> None:
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):  # a callable without a signature (a C function): nothing to compare
            return
        keywords = {p.name: p for p in parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        for name, declared in self.options.items():
            parameter = keywords.get(name)
            if parameter is None:
                if takes_any:
                    continue
                raise ValueError(f"{kind} {self.name!r}: option {name!r} is not a keyword argument of {role}()")
            if parameter.default is not parameter.empty and not same_value(parameter.default, declared):
                raise ValueError(
                    f"{kind} {self.name!r}: option {name!r} is declared with default {declared!r} but {role}() "
                    f"defaults it to {parameter.default!r}; make them equal"
                )


def same_value(a: Any, b: Any) -> bool:
    """Equal value and type (20 and 20.0 parse and behave differently)."""
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # values whose == is not a truth value (arrays)
        return a is b


@dataclass(frozen=True)
class BackboneSpec(_Options):
    """A face network: ``build(weights, **options)`` returns an ``nn.Module`` mapping a batch to embeddings.

    ``weights`` is None (no weights given), ``"random"`` (an untrained network, if the backbone allows it)
    or what the user passed to ``--weights``. ``options`` lists the keyword options ``build`` accepts
    (``--option name=value``) with their defaults; lrbench passes all of them. ``embedding_dim`` is the
    embedding's length, or a function of the options (called with all of them as keywords) when it depends
    on them; lrbench checks it against the built network's output. ``checkpoint_layouts`` names the foreign
    checkpoint layouts it can load, for listings; ``seed_input`` is the input the seed project used, if it
    differs. A network whose weights come from a file that ``--weights`` does not name (a packaged or cached
    default) records that file as its ``weights_file`` attribute, for the manifest.

    A backbone whose input, score or embedding length depend on its options rather than being fixed (one
    that runs a model file from another framework, under the convention its options name) gives
    ``specialise``: called with every option, it returns the fields those options set (``input``,
    ``metric``, ``flip_fusion``, ``embedding_dim``), and lrbench evaluates ``with_options(options)``; the
    declared fields are what listings show. ``embedding_dim`` None means the weights file decides it (lrbench
    then checks only that the network gives one vector per face). A network may also describe itself for the
    manifest with a ``provenance`` attribute (a dict, e.g. a model file's input and output names), and one
    that runs a fixed number of faces per call (an ONNX graph exported with batch 1) says so with an int
    ``fixed_batch`` attribute: ``--batch-size auto`` then uses it instead of measuring. Options that differ
    from the defaults are first tried with ``build("random", ...)`` on PyTorch's meta device (shapes, no
    memory) to refuse a network larger than the machine's memory; a build that fails there is simply not
    estimated.
    """

    name: str
    build: Callable[..., torch.nn.Module]
    input: InputSpec
    embedding_dim: int | Callable[..., int] | None
    metric: str = "cosine"
    flip_fusion: str = "concat"
    needs_weights: bool = False
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    checkpoint_layouts: tuple[str, ...] = ()
    seed_input: InputSpec | None = None  # the input as the seed project fed it, for ``--preset seed``
    specialise: Callable[..., dict[str, Any]] | None = None  # options → the fields they set (see above)

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"backbone {self.name!r}: metric must be one of {METRICS}")
        if self.flip_fusion not in FLIP_FUSIONS:
            raise ValueError(f"backbone {self.name!r}: flip_fusion must be one of {FLIP_FUSIONS}")
        self._check_options("backbone", "build", self.build)

    def embedding_size(self, options: dict[str, Any] | None = None) -> int | None:
        """The declared embedding length for these options (the defaults when None); None: the weights decide."""
        if callable(self.embedding_dim):
            return self.embedding_dim(**self.effective_options(options))
        return self.embedding_dim

    def with_options(self, options: dict[str, Any] | None = None) -> BackboneSpec:
        """The spec as these options make it: ``specialise``'s fields filled in (itself when it has none)."""
        if self.specialise is None:
            return self
        return replace(self, specialise=None, **self.specialise(**self.effective_options(options)))


@dataclass(frozen=True)
class DegradationSpec(_Options):
    """``apply(batch, df, **options)``: float NCHW batch in 0…255 → degraded batch of the same shape and range.

    ``options`` declares the keyword options (``--degradation-option name=value``) with their defaults
    (lrbench passes all of them); ``settings`` records fixed choices (interpolation, antialiasing) for the
    manifest. A random degradation takes a keyword ``seeds``: lrbench then passes an int64 tensor holding
    each image's own seed (``degrade.image_seeds``: its name, the DF and the run's ``--seed``), so the noise
    an image gets does not depend on the batch it is in; ``seeds`` is None where no image has a name (a
    training batch), and the degradation then draws from torch's generator. lrbench never calls ``apply``
    at DF 1: the full-resolution image is never degraded.
    """

    name: str
    apply: Callable[..., torch.Tensor]
    description: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self._check_options("degradation", "apply", self.apply)

    @property
    def takes_seeds(self) -> bool:
        """Whether ``apply`` takes each image's seed (a random degradation)."""
        try:
            return "seeds" in inspect.signature(self.apply).parameters
        except (TypeError, ValueError):
            return False


@dataclass
class PairSet:
    """A verification protocol loaded from disk: unique images and pairs of indices into them."""

    root: Path
    images: list[str]  # unique paths relative to root
    first: Any  # np.ndarray[int], index into images
    second: Any
    same: Any  # np.ndarray[bool]
    folds: Any  # np.ndarray[int], 0-based fold of each pair
    source: Path  # the pairs file
    names: list[tuple[str, str]] = field(default_factory=list)  # pair names as written in the file
    landmarks: Path | None = None  # the protocol's default landmark file, when one was found
    aligned: bool = False  # the images are aligned crops already (a .bin, an aligned set): run as with --aligned
    aligned_template: str | None = None  # the crop template aligned images are framed by, when known
    identities: list[str] | None = None  # the person of each image, as the protocol says; None: unknown (.bin)


@dataclass
class IdentificationSet:
    """An identification protocol loaded from disk: who is enrolled, who is searched for, and who is not.

    ``gallery`` and ``probes`` index ``images`` (paths relative to ``root``); ``gallery_ids`` and ``probe_ids``
    name each entry's identity, and a probe's mates are the gallery entries with its identity. ``distractors``
    are further gallery images of nobody searched for (closed-set ranks are over gallery + distractors);
    ``non_mated`` are probes of people outside the gallery, the open-set searches that must find nobody (they
    are searched against ``gallery`` alone). ``probe_groups`` (one label per probe, e.g. a camera distance)
    makes results be reported per group as well. ``source`` is the file or folder the set was read from.
    """

    root: Path
    images: list[str]
    gallery: Any  # np.ndarray[int], index into images
    gallery_ids: list[str]
    probes: Any  # np.ndarray[int]
    probe_ids: list[str]
    source: Path
    distractors: Any = None  # np.ndarray[int] or None
    non_mated: Any = None  # np.ndarray[int] or None
    probe_groups: list[str] | None = None
    landmarks: Path | None = None  # the protocol's default landmark file, when one was found
    aligned: bool = False  # the images are aligned crops already: run as with --aligned
    aligned_template: str | None = None  # the crop template aligned images are framed by, when known
    leave_one_out: bool = False  # a probe that is also a gallery image is searched without its own entry
    generated_distractors: int = 0  # distractors drawn at the feature level (identification.generated_distractors)


PROTOCOL_KINDS = ("verification", "identification")


@dataclass(frozen=True)
class ProtocolSpec:
    """``load(data_root, pairs_file or None)`` → PairSet (``kind`` "verification") or IdentificationSet
    (``kind`` "identification"); ``expected`` holds count checks for the report."""

    name: str
    load: Callable[[Path, Path | None], PairSet | IdentificationSet]
    description: str = ""
    citation: str = ""
    expected: dict[str, int] = field(default_factory=dict)
    kind: str = "verification"

    def __post_init__(self):
        if self.kind not in PROTOCOL_KINDS:
            raise ValueError(f"protocol {self.name!r}: kind must be one of {PROTOCOL_KINDS}, not {self.kind!r}")


@dataclass(frozen=True)
class Face:
    """One detected face in an image's pixel coordinates.

    ``box`` is (x1, y1, x2, y2); ``score`` the detector's confidence in 0…1; ``points`` the (5, 2) landmarks
    in lrbench's order: left eye, right eye, nose tip, left and right mouth corner, where "left" means as in
    the landmark files and crop templates: the point on the image's left (smaller x) in an upright face.
    """

    box: tuple[float, float, float, float]
    score: float
    points: Any  # np.ndarray (5, 2) float


@dataclass(frozen=True)
class DetectorSpec(_Options):
    """A face detector: ``build(weights, device, **options)`` returns a callable ``detect(images)``.

    ``images`` is a list of (H, W, 3) uint8 RGB arrays of any sizes; ``detect`` returns, for each image, the
    list of ``Face`` found in it (empty when there is none). ``weights`` is None (the detector's packaged
    default) or the file the user passed to ``--detector-weights``; ``device`` a ``torch.device``. ``options``
    declares the keyword options (``--detector-option name=value``) with their defaults; lrbench passes all
    of them, and they key the detection cache. A detector whose default weights come from files records
    their paths as the returned callable's ``weights_files`` attribute, for the manifest and the cache key.
    """

    name: str
    build: Callable[..., Callable[[list], list[list[Face]]]]
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self._check_options("detector", "build", self.build)


@dataclass(frozen=True)
class TrainerSpec:
    """A training procedure: ``command`` is the click command that ``lrbench train <name>`` runs."""

    name: str
    command: Any  # click.Command
    description: str = ""
