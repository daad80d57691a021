"""The plugin contract: each hook hands the plugin a ``register`` callable.

lrbench calls the ``register_*`` hooks through pluggy (order, wrappers and monitoring are pluggy's) and
attributes each registered name to the plugin whose implementation called ``register``.
"""

import pluggy

hookspec = pluggy.HookspecMarker("lrbench")
hookimpl = pluggy.HookimplMarker("lrbench")


@hookspec
def register_backbones(register):
    """Register face networks: ``register(BackboneSpec(...))``."""


@hookspec
def register_degradations(register):
    """Register image degradations: ``register(DegradationSpec(...))``."""


@hookspec
def register_protocols(register):
    """Register evaluation protocols: ``register(ProtocolSpec(...))``."""


@hookspec
def register_trainers(register):
    """Register training procedures: ``register(TrainerSpec(...))``."""


@hookspec
def register_detectors(register):
    """Register face detectors: ``register(DetectorSpec(...))``."""


@hookspec
def register_commands(cli):
    """Add subcommands to the ``lrbench`` click group."""
