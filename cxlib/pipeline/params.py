"""A notebook's declared parameters, and checking the values a pipeline passes.

Papermill injects whatever it is given — an undeclared parameter only earns a
log warning, and a value of the wrong type fails (or silently misbehaves) deep
inside the notebook. The runner refuses both before any run starts: it reads the
parameters cell with :func:`papermill.inspect_notebook` and checks every value
against the declared type.

Declare parameters as ``name: type = default  # what it is``. Papermill cannot
read annotations written ``str | None`` (use a sentinel: ``segment: str = ""  #
empty: all segments``) nor a line with a second ``=``, in its comment too. A
parameters-cell line papermill cannot read is reported, so a parameter never
silently disappears.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxlib.pipeline.spec import YamlScalar

__all__ = [
    "DeclaredParameter",
    "NotebookParameterError",
    "coerce_parameter",
    "declared_parameters",
    "notebook_hash",
]


class NotebookParameterError(Exception):
    """A notebook whose parameters cannot be read, or a value that does not fit."""


@dataclass(frozen=True)
class DeclaredParameter:
    """One parameter of a notebook's ``parameters`` cell.

    Attributes
    ----------
    name : str
    type_name : str
        The annotation as written (``str``, ``int``, ``Optional[str]`` ...), or
        the type of the default when there is no annotation.
    default : str
        The default as written in the cell.
    help : str
        The comment after the default.
    """

    name: str
    type_name: str
    default: str
    help: str = ""


_CACHE: dict[tuple[str, int, int], dict[str, DeclaredParameter]] = {}


def _parameters_cell(nb) -> tuple[int, str] | None:
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return i, cell.source
    return None


def declared_parameters(path: str | Path) -> dict[str, DeclaredParameter]:
    """The parameters a notebook declares in its cell tagged ``parameters``.

    Parameters
    ----------
    path : str or Path
        The notebook (``.ipynb``).

    Returns
    -------
    dict of str to DeclaredParameter
        In the order of the cell.

    Raises
    ------
    NotebookParameterError
        When the notebook is not a readable notebook, has no cell tagged
        ``parameters``, or assigns a name there that papermill cannot read.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key in _CACHE:
        return dict(_CACHE[key])
    import nbformat
    from papermill import inspect_notebook

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any unreadable file says the same
        raise NotebookParameterError(
            f"not a readable notebook ({type(exc).__name__}: {exc})"
        ) from None
    found = _parameters_cell(nb)
    if found is None:
        raise NotebookParameterError(
            "has no cell tagged 'parameters' (papermill would add one at the top); "
            "tag the cell holding the typed defaults"
        )
    index, source = found
    inspected = inspect_notebook(str(path))
    declared = {}
    for name, info in inspected.items():
        type_name = info.get("inferred_type_name") or "None"
        if type_name == "None":
            type_name = _type_of_default(info.get("default", ""))
        declared[name] = DeclaredParameter(
            name=name,
            type_name=type_name,
            default=str(info.get("default", "")),
            help=str(info.get("help", "") or ""),
        )
    unread = _assigned_names(source) - set(declared)
    if unread:
        lines = {n: ln for ln, n in _assignment_lines(source)}
        details = ", ".join(
            f"{n!r} (cell {index + 1}, line {lines.get(n, '?')})" for n in sorted(unread)
        )
        raise NotebookParameterError(
            f"its parameters cell assigns {details} in a form papermill cannot read; write "
            "`name: type = default  # comment` with a plain type (str, int, float, bool, list, "
            "dict, Optional[T]; not `str | None`), and no second '=' on the line, comment included"
        )
    _CACHE[key] = declared
    return dict(declared)


def _clean_source(source: str) -> str:
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )


def _assignment_lines(source: str) -> list[tuple[int, str]]:
    try:
        tree = ast.parse(_clean_source(source))
    except SyntaxError:
        return []
    out = []
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name):
                out.append((node.lineno, target.id))
    return out


def _assigned_names(source: str) -> set[str]:
    return {name for _, name in _assignment_lines(source)}


def _type_of_default(default: str) -> str:
    try:
        value = ast.literal_eval(default.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "Any"
    if value is None:
        return "Any"
    return type(value).__name__


def notebook_hash(path: str | Path) -> str:
    """SHA-256 of what a notebook does: its cells' types and sources and its kernel.

    Outputs, execution counts and cell ids do not count, so re-saving a notebook
    in JupyterLab does not make its runs out of date.
    """
    import nbformat

    nb = nbformat.read(Path(path), as_version=4)
    content = {
        "kernel": nb.metadata.get("kernelspec", {}).get("name"),
        "cells": [(c.cell_type, c.source, c.get("metadata", {}).get("tags", [])) for c in nb.cells],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------ checking values
_OPTIONAL = re.compile(r"^(?:typing\.)?Optional\[(.+)\]$")
_UNION_NONE = re.compile(r"^(?:typing\.)?Union\[(.+),\s*None\]$")
_GENERIC = re.compile(r"^(?:typing\.)?(\w+)\[.*\]$")
_ALIASES = {
    "List": "list",
    "Sequence": "list",
    "tuple": "list",
    "Tuple": "list",
    "Dict": "dict",
    "Mapping": "dict",
    "Path": "str",
    "PathLike": "str",
    "Any": "Any",
    "object": "Any",
}


def _parse_type(type_name: str) -> tuple[str, bool]:
    """(base type name, accepts None) of an annotation string."""
    text = type_name.strip().strip("'\"")
    optional = False
    for pattern in (_OPTIONAL, _UNION_NONE):
        match = pattern.match(text)
        if match:
            text, optional = match.group(1).strip(), True
    generic = _GENERIC.match(text)
    if generic:
        text = generic.group(1)
    text = text.rsplit(".", 1)[-1]
    return _ALIASES.get(text, text), optional


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _json_ready(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def coerce_parameter(declared: DeclaredParameter, value: Any) -> Any:
    """Check a value against a declared parameter; return the value to pass.

    Strings stay strings: an unquoted YAML scalar (``wave: 01``) given to a
    parameter declared ``str`` is passed as the text written (``"01"``), never as
    the number YAML made of it. An ``int`` is accepted for a ``float``.

    Raises
    ------
    NotebookParameterError
        Saying what was declared and what was given.
    """
    base, optional = _parse_type(declared.type_name)
    raw = value
    if isinstance(value, YamlScalar):
        if value.value is not None and base == "str":
            return value.text
        value = value.value
    if value is None:
        if optional or base == "Any":
            return None
        raise NotebookParameterError(
            f"is declared `{declared.type_name}` in the notebook, but the pipeline gives null"
        )
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "list": isinstance(value, list | tuple),
        "dict": isinstance(value, dict),
    }.get(base)
    if ok is None:  # a type we do not check (Any, or an unusual annotation)
        ok = True
    if not ok:
        hint = ""
        if base == "str" and isinstance(raw, YamlScalar):
            hint = f" (quote it in YAML: '{raw.text}')"
        raise NotebookParameterError(
            f"is declared `{declared.type_name}` in the notebook, but the pipeline gives "
            f"{_describe(value)}{hint}"
        )
    if base == "float":
        value = float(value)
    if isinstance(value, tuple):
        value = list(value)
    if not _json_ready(value):
        raise NotebookParameterError(
            f"gets {_describe(value)}, which cannot be passed to a notebook "
            "(use strings, numbers, booleans, lists and mappings; quote dates)"
        )
    return value
