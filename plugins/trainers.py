"""Built-in trainers: ``classify`` (a backbone and a margin head on identity folders) and ``distill`` (a frozen
teacher's features on the high-resolution face taught to a student that sees the degraded face, as the seed).

Their commands, modules and tasks are in networks/trainers.py: they need torch and ``lrbench.training``, so they
are imported when the trainers are listed or run, not whenever lrbench starts.
"""

from lrbench import TrainerSpec, hookimpl


@hookimpl
def register_trainers(register):
    from .networks.trainers import classify, distill

    register(TrainerSpec("classify", classify, "backbone + margin head (softmax, A-Softmax, CosFace, ArcFace)"))
    register(TrainerSpec("distill", distill, "HR teacher → LR student feature distillation (MSE or cosine)"))
