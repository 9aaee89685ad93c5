"""Errors written for the person reading them.

Every error cxlib raises on bad input derives from :class:`CxError`. The command
line prints its message and exits with status 2, with no traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "AlertRuleError",
    "ConvergenceWarning",
    "CxError",
    "DataProblem",
    "DataValidationError",
    "DriverError",
    "ImproperSolutionWarning",
    "ModelFileError",
    "ModelSpecificationError",
    "ModelSyntaxError",
    "NotApplicable",
    "StudySpecError",
    "closest",
    "did_you_mean",
]


def closest(name: object, choices: Iterable[object], *, cutoff: float = 0.6) -> str | None:
    """The choice closest to ``name``, or None when none is close enough.

    Parameters
    ----------
    name : object
        What was given (compared as ``str``).
    choices : iterable
        What is allowed (each compared as ``str``).
    cutoff : float
        How similar a choice must be, from 0 to 1 (as in
        :func:`difflib.get_close_matches`).

    Returns
    -------
    str or None
        The closest choice, as text.
    """
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(
    name: object, choices: Iterable[object], *, cutoff: float = 0.6, parens: bool = False
) -> str:
    """The "did you mean" hint an error message ends with, or ``""``.

    Parameters
    ----------
    name : object
        What was given (compared as ``str``).
    choices : iterable
        What is allowed (each compared as ``str``).
    cutoff : float
        How similar a choice must be, from 0 to 1 (see :func:`closest`).
    parens : bool
        Write the hint as an aside, ``" (did you mean 'x'?)"``, to follow a name
        inside a sentence; by default it is a clause, ``"; did you mean 'x'?"``,
        that ends one.

    Returns
    -------
    str
        The hint naming the closest choice, or ``""`` when none is close.

    Examples
    --------
    >>> did_you_mean("Loyalti", ["Image", "Loyalty"])
    "; did you mean 'Loyalty'?"
    >>> did_you_mean("wieght", ["weight"], parens=True)
    " (did you mean 'weight'?)"
    >>> did_you_mean("zzz", ["weight"])
    ''
    """
    match = closest(name, choices, cutoff=cutoff)
    if match is None:
        return ""
    return f" (did you mean {match!r}?)" if parens else f"; did you mean {match!r}?"


class CxError(Exception):
    """Base class of cxlib's errors about user input."""


class NotApplicable(CxError):
    """An analysis the study does not support: it lacks what the analysis needs.

    Not a failure: a notebook that raises it is recorded by the pipeline as *not
    applicable* with :attr:`reason` (and the notebooks that need its outputs follow).

    Parameters
    ----------
    reason : str
        What the study lacks and how to add it.
    """

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"not applicable: {reason}")


class StudySpecError(CxError):
    """A study spec (YAML) that is missing, unreadable or inconsistent."""


class AlertRuleError(CxError):
    """An alert rule that cannot be read (or evaluated with the inputs given)."""


class ModelSyntaxError(CxError, ValueError):
    """Lavaan model syntax that cannot be read.

    Parameters
    ----------
    message : str
        What is wrong.
    line, column : int, optional
        Where, 1-based, in the model text.
    statement : str, optional
        The offending statement, shown under the message.
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        statement: str | None = None,
    ):
        self.reason = message
        self.line = line
        self.column = column
        self.statement = statement
        where = f"model syntax, line {line}" if line else "model syntax"
        if line and column:
            where += f", column {column}"
        text = f"{where}: {message}"
        if statement:
            text += f"\n    {statement}"
            if column:
                text += "\n    " + " " * (column - 1) + "^"
        super().__init__(text)


@dataclass(frozen=True)
class DataProblem:
    """One problem found in a data file.

    Attributes
    ----------
    column : str or None
        The column at fault, or None for a file-level problem.
    message : str
        What is wrong, in a sentence.
    rows : tuple of int
        The first offending rows (line numbers in the file for text formats,
        1-based record numbers otherwise).
    values : tuple
        The offending values, aligned with ``rows``.
    n_rows : int
        How many rows are affected in all.
    expected : str
        What was expected instead.
    """

    column: str | None
    message: str
    rows: tuple[int, ...] = ()
    values: tuple = ()
    n_rows: int = 0
    expected: str = ""

    def describe(self, row_label: str = "row") -> str:
        """Return the problem as one paragraph of text."""
        head = f"column {self.column!r}: " if self.column else ""
        text = head + self.message
        if self.rows:
            shown = ", ".join(
                f"{row_label} {r} ({_show(v)})" if self.values else f"{row_label} {r}"
                for r, v in zip(self.rows, self.values or (None,) * len(self.rows), strict=True)
            )
            more = (
                f" and {self.n_rows - len(self.rows)} more" if self.n_rows > len(self.rows) else ""
            )
            text += f"\n      at {shown}{more}"
        if self.expected:
            text += f"\n      expected: {self.expected}"
        return text


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class DataValidationError(CxError):
    """A data file that does not match its study spec.

    Parameters
    ----------
    path : str
        The file.
    problems : sequence of DataProblem
        Everything found wrong (all of it, not only the first).
    row_label : str
        How rows are named in this file ("line" for text files, "row" otherwise).
    hint : str, optional
        What to do about it.
    """

    def __init__(
        self,
        path: str,
        problems: Sequence[DataProblem],
        *,
        row_label: str = "row",
        hint: str = "",
    ):
        self.path = str(path)
        self.problems = list(problems)
        self.row_label = row_label
        self.hint = hint
        n = len(self.problems)
        lines = [f"{self.path}: {n} problem{'s' if n != 1 else ''} found"]
        lines += [f"  - {p.describe(row_label)}" for p in self.problems]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))

    @property
    def columns(self) -> list[str]:
        """Columns named by the problems."""
        return [p.column for p in self.problems if p.column]


class ModelSpecificationError(CxError, ValueError):
    """A model that cannot be fitted as specified (not identified, items missing, ...)."""


class ModelFileError(CxError):
    """A saved model file that does not belong to this model type or cxlib version."""


class ConvergenceWarning(UserWarning):
    """The sampler did not converge: R-hat too high, ESS too low or divergences."""


class ImproperSolutionWarning(UserWarning):
    """A fitted model whose solution is improper (a Heywood case, near-collinear constructs).

    Standardized coefficients beyond +-1, latent R-squared of 0.95 or more, near-singular
    latent correlations (HTMT above 0.9) or variances at their boundary: the estimates
    cannot be read as they stand, converged or not.
    """


class DriverError(CxError):
    """A driver analysis asked for something the model or data cannot give."""
