"""``mix``: each image degraded by one kernel drawn from several, so that a student trained on it cannot
learn one kernel's artefacts instead of what a small face looks like.

    lrbench train distill ... --df 1-13 --degradation mix --degradation-option kernels=bicubic,area,camera

``kernels`` names registered degradations (any plugin's, e.g. the ``camera`` chain of
examples/lrbench-degrade-chain), each drawn with equal probability. In training the draw comes from torch's
generator (the training loop seeds it and checkpoints its state, so a resumed run draws the same); in
``lrbench run`` each image's kernel follows from its own seed, so an image meets the same kernel whatever
batch it is in, and a random kernel gets the same seed for its noise.
"""

from __future__ import annotations

from lrbench import DegradationSpec, UsageError, hookimpl, registry

DEFAULT_KERNELS = "bicubic,bilinear,area"


def kernel_specs(kernels: str) -> list[DegradationSpec]:
    """The registered degradations ``kernels`` names (comma-separated), refused by name when unknown. One look at
    the registry per call: ``mix`` runs once per DF of every training batch."""
    names = [name.strip() for name in kernels.split(",") if name.strip()]
    if not names or "mix" in names:
        raise UsageError(f"--degradation-option kernels={kernels}: name one or more registered degradations "
                         "other than mix, e.g. kernels=bicubic,area")
    registered = registry.collect("degradation")
    unknown = [name for name in names if name not in registered]
    if unknown:
        raise UsageError(f"--degradation-option kernels={kernels}: unknown degradation {unknown[0]!r}; available: "
                         f"{', '.join(sorted(registered))}")
    return [registered[name].spec for name in names]


def mix(batch, df: int, kernels: str = DEFAULT_KERNELS, seeds=None):
    """Degrade each image of the NCHW 0…255 batch with one of ``kernels``: the kernel ``seeds[i] mod k`` for
    seeded images, else a uniform draw from torch's generator."""
    import torch

    specs = kernel_specs(kernels)
    if seeds is not None:
        choice = (seeds % len(specs)).to(batch.device)
    else:
        choice = torch.randint(len(specs), (batch.shape[0],)).to(batch.device)
    out = torch.empty_like(batch)
    for k, spec in enumerate(specs):
        rows = (choice == k).nonzero().squeeze(1)
        if len(rows):
            extra = {"seeds": seeds[rows.cpu()] if seeds is not None else None} if spec.takes_seeds else {}
            out[rows] = spec.apply(batch[rows], df, **spec.effective_options(None), **extra)
    return out


@hookimpl
def register_degradations(register):
    register(
        DegradationSpec(
            name="mix",
            apply=mix,
            description="each image by one kernel drawn uniformly from kernels= (registered degradations)",
            settings={"draw": "uniform per image; from its seed in lrbench run"},
            options={"kernels": DEFAULT_KERNELS},
        )
    )
