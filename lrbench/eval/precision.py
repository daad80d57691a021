"""Numeric precision: the names users choose, autocast for them, and the check that keeps NaN/inf out of
scores, training targets and checkpoints."""

import torch

from ..errors import NumericalError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_for(device: torch.device, precision: str) -> torch.autocast:
    """Mixed precision for a resolved ``precision`` (fp32: a context that changes nothing)."""
    return torch.autocast(device.type, dtype=PRECISIONS[precision], enabled=precision != "fp32")


def require_finite(values: torch.Tensor, what: str, precision: str) -> None:
    """Refuse NaN/inf, saying the likely cause, before they become scores, targets or weights."""
    if bool(torch.isfinite(values).all()):
        return
    if precision == "fp16":
        cause = "values in the network exceed fp16's range (±65504): use --precision bf16 or fp32"
    else:
        cause = "the weights or the optimisation diverged (training: lower --lr or set --clip-grad)"
    raise NumericalError(f"{what}: NaN or infinite values under --precision {precision}: {cause}")
