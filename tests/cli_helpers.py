"""What the CLI tests share: calling ``lrbench`` in-process, checking a one-line error, and importing a
script from benchmarks/."""

import importlib.util
import sys
import types
from pathlib import Path

from click.testing import CliRunner

from lrbench.cli import cli


def invoke(*args):
    """``lrbench ARGS`` in this process; arguments may be paths or numbers."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, code, *fragments):
    """The command failed with exit ``code`` and one ``Error:`` line holding every fragment, no traceback."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def benchmark_script(name: str) -> types.ModuleType:
    """``benchmarks/<name>.py`` imported as a module (benchmarks/ is not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module
