"""Parse lavaan model syntax into a tidy parameter table.

Researchers write structural equation models in lavaan's syntax, and cxlib reads
that text as it is::

    Image   =~ IMG1 + IMG2 + IMG3        # measurement: a latent and its items
    Loyalty ~ b*Image + c*Experience     # regression, with labels
    IMG1 ~~ IMG2                         # residual covariance
    indirect := a*b                      # defined parameter

Supported operators: ``=~`` (measured by: items, or first-order constructs for a
higher-order one), ``<~`` (formed by: a composite of its indicators), ``~``
(regressed on; ``X:Z`` is the product of ``X`` and ``Z``, an interaction, and ``X:X``
a quadratic term), ``~~``, ``:=`` and intercepts (``y ~ 1``).
Modifiers: a number fixes a parameter (``1*x``), ``NA*x`` frees it, a name or
``label("a")`` labels it, ``start(0.5)*x`` sets a starting value. Statements are
separated by new lines or ``;``; a statement continues on the next line when the
line ends with ``+`` (or the next one starts with ``+``). ``#`` and ``!`` start
comments.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from cxlib.errors import ModelSyntaxError

__all__ = ["ModelTerm", "ParsedModel", "parse_model", "DefinedParameter"]

_OPERATORS = ("=~", "<~", "~~", ":=", "~")
_UNSUPPORTED = {
    "|": "thresholds ('|') are estimated automatically by the ordinal likelihood",
    "~*~": "scaling factors ('~*~') are not supported",
    "==": "equality constraints ('==') are not supported yet; give both parameters the same label",
    "<": "inequality constraints ('<') are not supported",
    ">": "inequality constraints ('>') are not supported",
}
_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
#: an interaction term: two names joined by ':' (``Experience:Cost``, ``X:X``)
_PRODUCT = re.compile(r"^([A-Za-z_.][A-Za-z0-9_.]*)\s*:\s*([A-Za-z_.][A-Za-z0-9_.]*)$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_CALL = re.compile(r"^(label|start|equal|c)\((.*)\)$", re.DOTALL)


@dataclass(frozen=True)
class ModelTerm:
    """One parameter of the model, in lavaan's ``lhs op rhs`` form.

    Attributes
    ----------
    lhs, op, rhs : str
        The left-hand side, operator (``=~``, ``<~``, ``~``, ``~~`` or ``~1``) and
        right-hand side. Intercepts have ``op="~1"`` and ``rhs=""``; an interaction
        has ``op="~"`` and ``rhs="X:Z"`` (:attr:`parts` gives ``("X", "Z")``).
    label : str or None
        The user's label (``a`` in ``a*Image``); parameters sharing a label are equal.
    fixed : float or None
        The fixed value (``1`` in ``1*x``), or None for a free parameter.
    start : float or None
        A starting value (``start(0.5)*x``).
    line : int
        The 1-based line of the model text the term came from.
    """

    lhs: str
    op: str
    rhs: str
    label: str | None = None
    fixed: float | None = None
    start: float | None = None
    free_forced: bool = False
    line: int = 0

    @property
    def parts(self) -> tuple[str, ...]:
        """The variables of the right-hand side: two for an interaction ``X:Z``, else one."""
        return tuple(self.rhs.split(":")) if ":" in self.rhs else (self.rhs,)

    @property
    def is_interaction(self) -> bool:
        """True for a product term ``Y ~ X:Z``."""
        return self.op == "~" and ":" in self.rhs


@dataclass(frozen=True)
class DefinedParameter:
    """A defined parameter (``name := expression``) over labels."""

    name: str
    expression: str
    labels: tuple[str, ...]
    line: int = 0


@dataclass
class ParsedModel:
    """The parsed model: its terms, defined parameters and the variables they name."""

    text: str
    terms: list[ModelTerm] = field(default_factory=list)
    defined: list[DefinedParameter] = field(default_factory=list)

    @property
    def latents(self) -> list[str]:
        """Latent variables (left of ``=~`` or ``<~``), in order of appearance."""
        return _unique(t.lhs for t in self.terms if t.op in ("=~", "<~"))

    @property
    def composites(self) -> dict[str, list[str]]:
        """Indicators forming each composite (``F <~ x1 + x2``), in order."""
        out: dict[str, list[str]] = {}
        for t in self.terms:
            if t.op == "<~":
                out.setdefault(t.lhs, [])
                if t.rhs not in out[t.lhs]:
                    out[t.lhs].append(t.rhs)
        return out

    @property
    def interactions(self) -> list[ModelTerm]:
        """Product terms (``Y ~ X:Z``)."""
        return [t for t in self.terms if t.is_interaction]

    @property
    def indicators(self) -> dict[str, list[str]]:
        """Items measuring each latent variable."""
        out: dict[str, list[str]] = {}
        for t in self.terms:
            if t.op == "=~":
                out.setdefault(t.lhs, [])
                if t.rhs not in out[t.lhs]:
                    out[t.lhs].append(t.rhs)
        return out

    @property
    def regressions(self) -> list[ModelTerm]:
        """Regression terms (``lhs ~ rhs``), i.e. outcome ``lhs`` on predictor ``rhs``."""
        return [t for t in self.terms if t.op == "~"]

    @property
    def covariances(self) -> list[ModelTerm]:
        """Covariance terms (``lhs ~~ rhs``), including variances (``x ~~ x``)."""
        return [t for t in self.terms if t.op == "~~"]

    @property
    def variables(self) -> list[str]:
        """Every variable the model names, latent or observed, in order of appearance.

        An interaction ``X:Z`` contributes its parts ``X`` and ``Z``.
        """
        names: list[str] = []
        for t in self.terms:
            names.append(t.lhs)
            if t.rhs:
                names.extend(t.parts)
        return _unique(names)

    @property
    def observed(self) -> list[str]:
        """Observed variables: every variable that is not a latent."""
        latents = set(self.latents)
        return [v for v in self.variables if v not in latents]

    @property
    def labels(self) -> list[str]:
        """Labels used on parameters."""
        return _unique(t.label for t in self.terms if t.label)

    def lines_for(self, name: str) -> list[int]:
        """Lines of the model text that mention ``name``."""
        return sorted({t.line for t in self.terms if name == t.lhs or name in t.parts})


def _unique(values) -> list:
    seen: dict = {}
    for v in values:
        if v is not None and v not in seen:
            seen[v] = None
    return list(seen)


def _statements(text: str) -> list[tuple[int, int, str]]:
    """Split the text into statements: (line number, column offset, statement)."""
    out: list[tuple[int, int, str]] = []
    pending: tuple[int, int, str] | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = re.split(r"[#!]", raw, maxsplit=1)[0]
        for part in _split_semicolons(line):
            stripped = part.strip()
            if not stripped:
                continue
            col = len(part) - len(part.lstrip()) + 1
            if pending and (pending[2].rstrip().endswith("+") or stripped.startswith("+")):
                pending = (pending[0], pending[1], pending[2] + " " + stripped)
                continue
            if pending:
                out.append(pending)
            pending = (lineno, col, stripped)
    if pending:
        out.append(pending)
    return out


def _split_semicolons(line: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in line:
        depth += ch == "("
        depth -= ch == ")"
        if ch == ";" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _find_operator(stmt: str) -> tuple[str, int] | None:
    for op in ("~*~", "<~"):
        if op in stmt:
            return op, stmt.index(op)
    for op in _OPERATORS:
        idx = stmt.find(op)
        if idx >= 0:
            return op, idx
    for op in ("==", "<", ">", "|"):
        if op in stmt:
            return op, stmt.index(op)
    return None


def _split_terms(rhs: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for ch in rhs:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "+" and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return [t.strip() for t in terms]


def _fail(msg: str, lineno: int, text: str, column: int | None = None) -> ModelSyntaxError:
    return ModelSyntaxError(msg, line=lineno, column=column, statement=text)


def _parse_modifier(mod: str, lineno: int, stmt: str) -> dict:
    mod = mod.strip()
    if _NUMBER.match(mod):
        return {"fixed": float(mod)}
    if mod == "NA":
        return {"free_forced": True}
    call = _CALL.match(mod)
    if call:
        fn, arg = call.group(1), call.group(2).strip().strip("'\"")
        if fn in ("label", "equal"):
            if not _NAME.match(arg):
                raise _fail(f"{fn}() needs a name, got {arg!r}", lineno, stmt)
            return {"label": arg}
        if fn == "start":
            if not _NUMBER.match(arg):
                raise _fail(f"start() needs a number, got {arg!r}", lineno, stmt)
            return {"start": float(arg)}
        raise _fail(
            "group-specific modifiers c(...) are not supported; fit with group=... instead",
            lineno,
            stmt,
        )
    if _NAME.match(mod):
        return {"label": mod}
    raise _fail(f"cannot read the modifier {mod!r}", lineno, stmt)


def _parse_term(term: str, lineno: int, stmt: str) -> tuple[str, dict]:
    if not term:
        raise _fail("an empty term (two '+' in a row, or a '+' at the end)", lineno, stmt)
    pieces = [p.strip() for p in _split_star(term)]
    name = pieces[-1]
    mods: dict = {}
    for mod in pieces[:-1]:
        for key, value in _parse_modifier(mod, lineno, stmt).items():
            mods[key] = value
    if name == "1" and not pieces[:-1]:
        return "1", mods
    product = _PRODUCT.match(name)
    if product:
        return f"{product.group(1)}:{product.group(2)}", mods
    if not _NAME.match(name):
        raise _fail(f"{name!r} is not a valid variable name", lineno, stmt, stmt.find(name) + 1)
    return name, mods


def _split_star(term: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in term:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "*" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


_ALLOWED_EXPR = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.Pow,
    ast.USub,
    ast.UAdd,
)


#: The most labels, numbers and operators a defined parameter's expression may hold.
MAX_DEFINED_TOKENS = 500
#: The deepest nesting of a defined parameter's expression (parentheses and operators).
MAX_DEFINED_DEPTH = 50
#: The largest number a defined parameter may contain, or compute from numbers alone.
MAX_DEFINED_CONSTANT = 1e6
#: The largest power (``x^k``) a defined parameter may raise to.
MAX_DEFINED_EXPONENT = 10
_TOKEN = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+|\*\*|\S")


def _parse_defined(lhs: str, rhs: str, lineno: int, stmt: str) -> DefinedParameter:
    if not _NAME.match(lhs):
        raise _fail(f"{lhs!r} is not a valid name for a defined parameter", lineno, stmt)
    shown = rhs if len(rhs) <= 60 else rhs[:57] + "..."
    n_tokens = len(_TOKEN.findall(rhs))
    if n_tokens > MAX_DEFINED_TOKENS:
        raise _fail(
            f"the expression of {lhs!r} has {n_tokens:,} labels, numbers and operators; a "
            f"defined parameter has at most {MAX_DEFINED_TOKENS}",
            lineno,
            f"{lhs} := {shown}",
        )
    depth = deepest = 0
    for ch in rhs:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_DEFINED_DEPTH:
        raise _fail(
            f"the expression of {lhs!r} nests {deepest} parentheses deep; at most "
            f"{MAX_DEFINED_DEPTH}",
            lineno,
            f"{lhs} := {shown}",
        )
    try:
        tree = ast.parse(rhs.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise _fail(f"cannot read the expression {rhs!r}: {exc.msg}", lineno, stmt) from None
    _check_bounds(tree, lhs, lineno, f"{lhs} := {shown}")
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_EXPR):
            raise _fail(
                f"the expression {rhs!r} may only use labels, numbers and + - * / ^",
                lineno,
                stmt,
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise _fail(f"the expression {rhs!r} has a non-numeric constant", lineno, stmt)
    names = tuple(_unique(n.id for n in ast.walk(tree) if isinstance(n, ast.Name)))
    return DefinedParameter(lhs, rhs.strip(), names, lineno)


def _check_bounds(tree: ast.Expression, name: str, lineno: int, stmt: str) -> None:
    """Refuse an expression whose evaluation could hang or overflow.

    Numbers alone are evaluated here, in floating point: each number, and whatever
    numbers alone compute (``9^9^9``), must stay within :data:`MAX_DEFINED_CONSTANT`,
    and every power within :data:`MAX_DEFINED_EXPONENT` (Python computes ``9**9**9**9``
    exactly, as an integer, which never ends). Parts with labels are floats (posterior
    draws), which cannot hang. Nesting beyond :data:`MAX_DEFINED_DEPTH` is refused.
    """

    def fail(message: str) -> ModelSyntaxError:
        return _fail(f"the defined parameter {name!r}: {message}", lineno, stmt)

    # post-order, without recursion: (node, depth, children visited)
    values: dict[int, float | None] = {}  # id(node) -> value when numbers alone
    stack: list[tuple[ast.AST, int, bool]] = [(tree.body, 1, False)]
    while stack:
        node, depth, visited = stack.pop()
        if depth > MAX_DEFINED_DEPTH:
            raise fail(f"the expression nests deeper than {MAX_DEFINED_DEPTH} operations")
        children = [
            getattr(node, key) for key in ("left", "right", "operand") if hasattr(node, key)
        ]
        if not visited and children:
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in children)
            continue
        value: float | None = None
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            if isinstance(node.value, bool):
                raise fail(f"{node.value!r} is not a number")
            value = float(node.value)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = values.get(id(node.operand))
            value = None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
        elif isinstance(node, ast.BinOp):
            left, right = values.get(id(node.left)), values.get(id(node.right))
            if isinstance(node.op, ast.Pow) and right is not None:
                if abs(right) > MAX_DEFINED_EXPONENT:
                    raise fail(
                        f"the power {right:g} is beyond {MAX_DEFINED_EXPONENT} "
                        f"(use a power from -{MAX_DEFINED_EXPONENT} to {MAX_DEFINED_EXPONENT})"
                    )
            if left is not None and right is not None:
                value = _number_op(node.op, left, right, fail)
        if value is not None and not abs(value) <= MAX_DEFINED_CONSTANT:
            raise fail(
                f"the number {value:g} is beyond {MAX_DEFINED_CONSTANT:g} (a defined "
                "parameter combines labelled estimates with small numbers)"
            )
        values[id(node)] = value


def _number_op(op: ast.operator, left: float, right: float, fail) -> float:
    """``left op right`` in floating point, for numbers within the bounds."""
    if isinstance(op, ast.Add):
        return left + right
    if isinstance(op, ast.Sub):
        return left - right
    if isinstance(op, ast.Mult):
        return left * right
    if isinstance(op, ast.Div):
        if right == 0:
            raise fail("it divides by zero")
        return left / right
    if isinstance(op, ast.Pow):
        if left == 0 and right < 0:
            raise fail("it divides by zero (0 to a negative power)")
        if left < 0 and not right.is_integer():
            raise fail(f"{left:g}^{right:g} is not a real number")
        return float(left**right)
    raise fail("it may only use + - * / ^")


def parse_model(text: str) -> ParsedModel:
    r"""Parse lavaan model syntax.

    Parameters
    ----------
    text : str
        The model, in lavaan syntax.

    Returns
    -------
    ParsedModel
        Terms in order, with labels, fixed values and the line each came from.

    Raises
    ------
    ModelSyntaxError
        When a statement cannot be read; the message names the line and shows it.

    Examples
    --------
    >>> m = parse_model("Image =~ IMG1 + IMG2\\nLoyalty ~ b*Image")
    >>> m.latents
    ['Image']
    >>> m.regressions[0].label
    'b'
    """
    if not isinstance(text, str):
        raise ModelSyntaxError(f"the model must be a string of lavaan syntax, got {type(text)}")
    model = ParsedModel(text=text)
    for lineno, _col, stmt in _statements(text):
        found = _find_operator(stmt)
        if found is None:
            raise _fail(
                "no operator found: expected one of '=~' (measured by), '~' (regressed on), "
                "'~~' (covaries with) or ':=' (defined as)",
                lineno,
                stmt,
            )
        op, idx = found
        if op in _UNSUPPORTED:
            raise _fail(_UNSUPPORTED[op], lineno, stmt, idx + 1)
        lhs_text, rhs_text = stmt[:idx].strip(), stmt[idx + len(op) :].strip()
        if not lhs_text:
            raise _fail(f"nothing on the left of '{op}'", lineno, stmt, idx + 1)
        if not rhs_text:
            raise _fail(f"nothing on the right of '{op}'", lineno, stmt, idx + len(op) + 1)
        if op == ":=":
            model.defined.append(_parse_defined(lhs_text, rhs_text, lineno, stmt))
            continue
        lhs_names = []
        for lhs in _split_terms(lhs_text):
            name, mods = _parse_term(lhs, lineno, stmt)
            if mods or name == "1":
                raise _fail(
                    f"a modifier belongs on the right of '{op}', not on {lhs!r}", lineno, stmt
                )
            lhs_names.append(name)
        for term in _split_terms(rhs_text):
            name, mods = _parse_term(term, lineno, stmt)
            for lhs in lhs_names:
                if name == "1":
                    if op != "~":
                        raise _fail(
                            f"'1' (an intercept) only goes with '~', not '{op}'", lineno, stmt
                        )
                    model.terms.append(ModelTerm(lhs, "~1", "", line=lineno, **mods))
                    continue
                if op in ("~", "<~") and lhs in name.split(":"):
                    verb = "regressed on" if op == "~" else "formed by"
                    raise _fail(f"{lhs!r} is {verb} itself", lineno, stmt)
                if ":" in name and op != "~":
                    raise _fail(
                        f"the interaction {name!r} can only be a predictor in a regression "
                        f"('Y ~ X + Z + {name}'), not on the right of '{op}'",
                        lineno,
                        stmt,
                    )
                model.terms.append(ModelTerm(lhs, op, name, line=lineno, **mods))
            if op == "<~" and len(_split_terms(rhs_text)) == 1:
                raise _fail(
                    f"the composite {lhs_names[0]!r} is formed by one indicator only; a "
                    "composite needs two or more ('F <~ x1 + x2'). For one item, regress on "
                    "the item itself ('Y ~ x1') or write a one-item construct ('F =~ x1')",
                    lineno,
                    stmt,
                )
    if not model.terms and not model.defined:
        raise ModelSyntaxError("the model is empty: write at least one '=~' or '~' line")
    _check_defined(model)
    return model


def _check_defined(model: ParsedModel) -> None:
    labels = set(model.labels)
    defined: set[str] = set()
    for d in model.defined:
        unknown = [n for n in d.labels if n not in labels and n not in defined]
        if unknown:
            raise _fail(
                f"the defined parameter {d.name!r} uses {', '.join(map(repr, unknown))}, "
                f"which label no parameter (labels: {', '.join(sorted(labels)) or 'none'})",
                d.line,
                f"{d.name} := {d.expression}",
            )
        defined.add(d.name)
