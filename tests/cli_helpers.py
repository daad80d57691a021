"""What the CLI tests share: calling ``lrbench`` in-process and checking a one-line error."""

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
