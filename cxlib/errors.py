"""Errors written for the person reading them.

Every error cxlib raises on bad input derives from :class:`CxError`. The command
line prints its message and exits with status 2, with no traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CxError",
    "DataProblem",
    "DataValidationError",
    "ModelSyntaxError",
    "StudySpecError",
]


class CxError(Exception):
    """Base class of cxlib's errors about user input."""


class StudySpecError(CxError):
    """A study spec (YAML) that is missing, unreadable or inconsistent."""


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
