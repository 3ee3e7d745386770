"""The one exception type the analysis raises for unusable input."""

from __future__ import annotations

__all__ = ["AnalysisInputError"]


class AnalysisInputError(ValueError):
    """A run directory, ground truth or rule that cannot be analysed as given.

    The message is meant for the person who ran the command: it names the bad
    input and what was expected, so the CLI prints it as one line (exit 2)
    instead of a traceback.

    Examples
    --------
    >>> raise AnalysisInputError("run directory 'runs/x' has no records.csv")
    Traceback (most recent call last):
    ...
    loadgrade.analysis.errors.AnalysisInputError: run directory 'runs/x' has no records.csv
    """
