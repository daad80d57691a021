"""Which figure files a report writes: always a PNG (report.html embeds it), and beside it vector copies for
papers, all of them unless $LRBENCH_FIGURE_FORMATS names fewer."""

from __future__ import annotations

import os

from ..errors import UsageError

FIGURE_FORMATS = ("pdf", "svg")  # the vector copies written beside each PNG of a verification run, for papers
FIGURE_FORMATS_ENV = "LRBENCH_FIGURE_FORMATS"


def figure_formats() -> tuple[str, ...]:
    """The vector copies to write beside each PNG: all of ``FIGURE_FORMATS`` unless $LRBENCH_FIGURE_FORMATS lists
    the formats wanted (comma-separated, e.g. ``png,pdf``; ``png`` or empty: PNG only, a second or two less per
    report for sweeps and test suites)."""
    text = os.environ.get(FIGURE_FORMATS_ENV)
    if text is None:
        return FIGURE_FORMATS
    chosen = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = sorted(chosen - {"png", *FIGURE_FORMATS})
    if unknown:
        raise UsageError(f"${FIGURE_FORMATS_ENV}={text}: {', '.join(unknown)} is not one of png, "
                         f"{', '.join(FIGURE_FORMATS)}")
    return tuple(name for name in FIGURE_FORMATS if name in chosen)
