"""Registered backbones as trainers use them: built for training, fed batches of crops, probed for their size."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
from torch import nn

from .. import registry
from ..errors import LrbenchError, UsageError
from ..eval import distributed
from ..eval.models import build_backbone, check_network_size
from ..eval.precision import autocast_for, require_finite
from ..options import parse_options
from ..specs import InputSpec
from .data import Degrade, degrade_each


def trainable_network(name: str, weights: str | None, options: Sequence[str], flag: str = "--option"):
    """(spec, network) to train: loaded from ``weights``, or freshly initialised when there are none.

    (``build_backbone`` warns that a random network's numbers mean nothing; not so for one about to be
    trained.)
    """
    spec = registry.backbone(name)
    parsed = parse_options(spec, options, flag)
    if weights not in (None, "random"):
        return spec.with_options(parsed), build_backbone(spec, weights, parsed)
    check_network_size(spec, parsed)
    try:
        return spec.with_options(parsed), spec.build("random", **spec.effective_options(parsed))
    except LrbenchError:
        raise
    except (ValueError, KeyError) as exc:
        raise UsageError(f"backbone {name!r}: {exc}") from exc


def frozen_network(name: str, weights: str | None, options: Sequence[str], weights_flag: str, flag: str):
    """(spec, network) in eval mode with gradients off: a teacher."""
    spec = registry.backbone(name)
    if spec.needs_weights and not weights:
        raise UsageError(f"{weights_flag}: backbone {name!r} needs weights (a checkpoint file)")
    parsed = parse_options(spec, options, flag)
    model = build_backbone(spec, weights, parsed)
    return spec.with_options(parsed), model.eval().requires_grad_(False)


def degradation(name: str, options: Sequence[str]) -> Degrade:
    """A registered degradation with its ``--degradation-option`` values bound."""
    spec = registry.degradation(name)
    return partial(spec.apply, **parse_options(spec, options, "--degradation-option"))


@torch.no_grad()
def embedding_size(model: nn.Module, spec: InputSpec) -> int:
    """Length of the network's embedding, measured on a blank crop (a plugin's declared size can depend on
    its options)."""
    width, height = spec.template.size
    was_training = model.training
    size = model.eval()(torch.zeros(2, 3, height, width)).shape[1]
    model.train(was_training)
    return size


def network_input(
    crops: torch.Tensor,
    spec: InputSpec,
    device: torch.device,
    dfs: torch.Tensor | None = None,
    degrade: Degrade | None = None,
) -> torch.Tensor:
    """A uint8 (B, H, W, 3) RGB batch → the network's normalised input, each image degraded at its DF if given."""
    # NCHW-contiguous before resizing: interpolation on the NHWC view is about half as fast on CPUs.
    batch = crops.to(device, non_blocking=True).permute(0, 3, 1, 2).float().contiguous()
    if dfs is not None:
        batch = degrade_each(batch, dfs.to(device), degrade)
    return spec.normalise(batch).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def features_of_all(
    model: nn.Module,
    crops: np.ndarray,
    spec: InputSpec,
    mirrored: bool,
    ranks: distributed.Ranks,
    batch_size: int,
    precision: str,
) -> torch.Tensor:
    """Embeddings of every crop (and of its mirror image if ``mirrored``) as a float32 (F, N, D) CPU tensor,
    computed under ``precision`` (a resolved one: fp32, bf16, fp16) and refused if any is NaN or infinite.

    The processes share the work (rows ``rank::world``) and exchange results. Chunks are fixed, so the
    values do not depend on when they are computed: a resumed run gets the same ones.
    """
    rows = np.arange(ranks.rank, len(crops), ranks.world)
    autocast = autocast_for(ranks.device, precision)
    parts = []
    for start in range(0, len(rows), batch_size):
        images = network_input(torch.from_numpy(crops[rows[start : start + batch_size]]), spec, ranks.device)
        views = [images, images.flip(3)] if mirrored else [images]
        with autocast:
            parts.append(torch.stack([model(view).float() for view in views]))
    local = torch.cat(parts, dim=1).transpose(0, 1)  # (rows, F, D): rows first, as gather_rows expects
    features = distributed.gather_rows(ranks, local.contiguous(), len(crops)).transpose(0, 1).cpu().contiguous()
    require_finite(features, "the teacher's cached features", precision)
    return features
