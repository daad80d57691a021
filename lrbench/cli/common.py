"""What every lrbench command shares: the command line it was started with (for manifests and output locks)."""

import shlex

import click


def command_line() -> str:
    """The ``lrbench …`` command line being run, as a shell would take it back."""
    return shlex.join(click.get_current_context().meta.get("lrbench.argv", []))
