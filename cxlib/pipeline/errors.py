"""Errors of the pipeline layer, written for the person reading them.

They derive from :class:`cxlib.errors.CxError`, so the command line prints the
message and exits with status 2, with no traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

from cxlib.errors import CxError

__all__ = ["PipelineSpecError", "RunNotFoundError", "StudyBusyError"]


class PipelineSpecError(CxError):
    """A pipeline spec that is missing, invalid, or names things that do not exist.

    Parameters
    ----------
    source : str
        The pipeline file (or "pipeline spec" for one built in Python).
    problems : sequence of str
        Every problem found, each naming the key at fault (``notebooks[0].path``).
    """

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = str(source)
        self.problems = list(problems)
        n = len(self.problems)
        lines = [f"{self.source}: the pipeline cannot run ({n} problem{'s' if n != 1 else ''})"]
        lines += [f"  - {p}" for p in self.problems]
        lines.append("Nothing was run.")
        super().__init__("\n".join(lines))


class StudyBusyError(CxError):
    """Another runner holds the study's lock (two runners never write one study)."""


class RunNotFoundError(CxError):
    """A run id that is in neither the catalog nor the runs directory."""
