"""Registers every declarative benchmark shipped in protocols/*.toml."""

from importlib import resources

from lrbench import ProtocolDefinition, hookimpl


@hookimpl
def register_protocols(register):
    for entry in sorted(resources.files("lrbench_protocols").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            with resources.as_file(entry) as path:
                register(ProtocolDefinition.from_toml(path).spec())
