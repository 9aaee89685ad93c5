"""How charts name constructs: the spec's labels when a study (or its labels) is at hand."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cxlib.errors import CxError

__all__ = ["labeller"]


def labeller(labels=None) -> Callable[[str], str]:
    """A function from a construct (or attribute) name to how charts show it.

    Parameters
    ----------
    labels : Study, mapping or None
        A :class:`cxlib.study.Study` (its :meth:`~cxlib.study.Study.label_of`), a
        mapping name -> label (e.g. the ``labels`` of ``study.summary()``, what a
        published run carries), a function name -> label, or None (names as they are).

    Returns
    -------
    callable
        ``name -> label``; names it does not know come back unchanged.

    Examples
    --------
    >>> labeller({"CUSL": "Loyalty"})("CUSL"), labeller()("CUSL")
    ('Loyalty', 'CUSL')
    """
    if labels is None:
        return str
    if hasattr(labels, "label_of"):
        return lambda name: str(labels.label_of(name))
    if isinstance(labels, Mapping):
        return lambda name: str(labels.get(name, name))
    if callable(labels):
        return lambda name: str(labels(name))
    raise CxError(
        f"labels must be a Study, a mapping of names to labels, a function or None, got {type(labels).__name__}"
    )
