"""Downsample-then-upsample degradations: lrbench's default and the seed project's exact behaviour."""

from functools import partial

from lrbench import DegradationSpec, hookimpl, resize_down_up

_VARIANTS = {
    "bicubic": (
        dict(down="bicubic", up="bicubic", antialias=True),
        "antialiased bicubic down to (int(W/DF), int(H/DF)), bicubic back up (default)",
    ),
    "bilinear": (
        dict(down="bilinear", up="bilinear", antialias=True),
        "antialiased bilinear down, bilinear back up",
    ),
    "area": (
        dict(down="area", up="bicubic", antialias=False),
        "area (box average) down, bicubic back up: a sensor's pixels integrating the light that falls on them",
    ),
    "seed": (
        dict(down="bilinear", up="bilinear", antialias=False, quantize=True),
        "the seed project's cv2.resize default: bilinear without antialiasing, uint8 after each step",
    ),
}


@hookimpl
def register_degradations(register):
    for name, (settings, description) in _VARIANTS.items():
        register(DegradationSpec(name, partial(resize_down_up, **settings), description, settings))
