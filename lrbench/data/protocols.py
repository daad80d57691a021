"""Finding a ``--protocol``: a registered name, a protocol definition file (pairs or identification), or an
insightface ``.bin``; with where it came from, for the manifest."""

from __future__ import annotations

from pathlib import Path

from .. import registry
from ..errors import UsageError
from ..fileio import sha256_file
from ..plugins import plugin_origin
from ..progress import ProgressMode
from ..specs import ProtocolSpec
from .binsets import bin_protocol
from .identification_layout import IdentificationLayout, is_identification_toml
from .pairs import ProtocolDefinition


def load_protocol(
    name: str, data: Path | None = None, cache_dir: Path | None = None, show_progress: ProgressMode | bool = "bar"
) -> tuple[ProtocolSpec, dict]:
    """A registered protocol, a protocol definition file, or an insightface .bin (found when loaded, as given or
    in the data folder; its images unpacked once into ``cache_dir``); with where it comes from (a .bin's path
    and SHA-256 are the manifest's pairs file)."""
    if name.endswith(".bin"):
        return bin_protocol(name, cache_dir, show_progress), {"file": name, "format": "insightface .bin"}
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise UsageError(f"--protocol {name}: no such file")
        origin = {"file": str(path.resolve()), "sha256": sha256_file(path)}
        if is_identification_toml(path):
            return IdentificationLayout.from_toml(path).spec(), origin
        return ProtocolDefinition.from_toml(path).spec(), origin
    found = registry.entry("protocol", name)
    return found.spec, plugin_origin(found.plugin)


def protocol_kind(name: str) -> str:
    """"verification" or "identification": which run a ``--protocol`` value starts."""
    if name.endswith(".bin"):  # insightface's verification sets
        return "verification"
    return load_protocol(name)[0].kind
