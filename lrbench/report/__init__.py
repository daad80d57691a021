"""Run directories and everything computed from their files: metrics and statistics from scores, the
checks that refuse a damaged or edited run, figures, HTML reports, console tables and run comparisons.
It imports no network code (``lrbench report`` and ``lrbench compare`` need no torch)."""
