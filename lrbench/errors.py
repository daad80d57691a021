"""Errors a user can act on: the CLI prints them as one line, with no traceback."""

from __future__ import annotations

from collections.abc import Sequence


class LrbenchError(Exception):
    """A problem with the user's input or data; the message says what and where.

    ``details`` (optional) holds supporting lines, such as a table of mismatched checkpoint keys.
    """

    exit_code = 1
    details: str | None = None


class UsageError(LrbenchError):
    """A bad option, name or value on the command line (exit code 2, like click's own)."""

    exit_code = 2


class NumericalError(LrbenchError):
    """Features or a training loss became NaN or infinite (an fp16 overflow, a diverging run, broken weights)."""

    exit_code = 1


class DataError(LrbenchError):
    """A missing, corrupt or malformed input file; the message names the file (and line)."""

    exit_code = 1


def brief_list(items: Sequence[str], shown: int = 5) -> str:
    """The first few items of a long list, and how many there are, for a one-line error message."""
    listed = ", ".join(items[:shown])
    return listed + (f", … ({len(items)} in all)" if len(items) > shown else "")
