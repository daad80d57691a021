"""Built-in trainers: ``classify`` (a backbone and a margin head on identity folders) and ``distill`` (a frozen
teacher's features on the high-resolution face taught to a student that sees the degraded face, as the seed).

Their commands are declared here, from ``lrbench.training``'s option decorators, which need no torch; what they
run (modules, tasks, the training) is in networks/trainers.py, imported when a trainer runs, so listing the
trainers or asking for their help starts in a fraction of a second.
"""

import click

from lrbench import TrainerSpec, UsageError, hookimpl
from lrbench.training import MARGIN_HEADS, data_options, degradation_options, loop_options

FEATURE_LOSSES = ("mse", "cosine")


def _head_options(function):
    function = click.option(
        "--margin", type=float, help="Margin: CosFace m (0.35), ArcFace m (0.5 rad), A-Softmax m (4)."
    )(function)
    return click.option("--scale", type=float, help="Logit scale s of CosFace/ArcFace (default 30 / 64).")(function)


@click.command()
@loop_options(lr=3e-4)  # 1e-3 made SphereFace-20's activations grow to 1e6 at batch 256 (H200, bf16)
@data_options
@click.option("--backbone", "-b", default="sphereface", show_default=True, help="Registered backbone to train.")
@click.option("--weights", "-w", help="Start from this checkpoint (default: freshly initialised).")
@click.option("--option", multiple=True, metavar="NAME=VALUE", help="A backbone option, e.g. depth=20; repeatable.")
@click.option(
    "--loss",
    type=click.Choice(MARGIN_HEADS),
    default="cosface",
    show_default=True,
    help="Classification head: softmax, A-Softmax (annealed λ), CosFace/AM-Softmax, ArcFace.",
)
@_head_options
@click.option(
    "--resolution-augment",
    default="1",
    show_default=True,
    metavar="DFS",
    help="Train each sample at a random DF from these, e.g. 1-8 (1: high resolution only).",
)
@degradation_options
@click.pass_context
def classify(ctx, **params):
    """Train a backbone with a margin head on identity folders (CASIA-WebFace layout)."""
    from .networks.trainers import run_classify

    run_classify(ctx, params)


@click.command()
@loop_options(lr=3e-4)
@data_options
@click.option(
    "--teacher",
    help="Registered backbone of the frozen high-resolution teacher (required): e.g. dlib-resnet, iresnet, or any "
    "network as a model file: onnx or torchscript with --teacher-weights FILE and --teacher-option preset=NAME.",
)
@click.option(
    "--teacher-weights",
    help="Its checkpoint (e.g. a classify run's model.pt; default: the backbone's default weights, if it has any).",
)
@click.option("--teacher-option", multiple=True, metavar="NAME=VALUE", help="A teacher backbone option.")
@click.option(
    "--student",
    help="The student's backbone (default: the teacher's, initialised from its weights; required for a model-file "
    "teacher). Embedding lengths may differ: a learned linear projection then maps the student's onto the teacher's.",
)
@click.option(
    "--student-weights",
    help="The student's initial weights ('random': fresh; default: the teacher's for the teacher's backbone "
    "and options, else fresh).",
)
@click.option("--student-option", multiple=True, metavar="NAME=VALUE", help="A student backbone option.")
@click.option(
    "--df",
    default="8",
    show_default=True,
    metavar="DFS",
    help="The student's degradation factor, or a range (e.g. 1-13: a random DF per sample, one student for "
    "every resolution).",
)
@degradation_options
@click.option(
    "--loss",
    type=click.Choice(FEATURE_LOSSES),
    default="mse",
    show_default=True,
    help="Feature loss between the teacher's and the student's embeddings (mse: the seed's).",
)
@click.option(
    "--cls-weight",
    type=float,
    default=0.0,
    show_default=True,
    help="Add this times a classification loss (needs identity folders).",
)
@click.option(
    "--cls-loss",
    type=click.Choice(MARGIN_HEADS),
    default="cosface",
    show_default=True,
    help="The added classification loss's head.",
)
@_head_options
@click.option(
    "--relation-weight",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Add this times a relational loss: the student keeps the teacher's pairwise distances within each batch "
    "(normalised by their mean; RKD).",
)
@click.option(
    "--fused-targets/--no-fused-targets",
    default=False,
    show_default=True,
    help="Target the mean of the teacher's features on the face and on its mirror image (flip fusion).",
)
@click.option(
    "--teacher-cache/--no-teacher-cache",
    default=True,
    show_default=True,
    help="Compute the teacher's features once before training instead of in every step.",
)
@click.pass_context
def distill(ctx, **params):
    """Teach a student on degraded faces to reproduce a frozen teacher's features on the originals."""
    if not params["teacher"] and not params["resume"]:  # a resumed run has its teacher in its configuration
        raise UsageError("--teacher NAME is required: the registered backbone of the frozen teacher")
    from .networks.trainers import run_distill

    run_distill(ctx, params)


@hookimpl
def register_trainers(register):
    register(TrainerSpec("classify", classify, "backbone + margin head (softmax, A-Softmax, CosFace, ArcFace)"))
    register(TrainerSpec("distill", distill, "HR teacher → LR student feature distillation (MSE or cosine)"))
