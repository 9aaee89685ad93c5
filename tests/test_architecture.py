"""The house plan, checked from the source: layers, cycles, private names, one fit, one summarizer.

Everything here reads the code (``ast``), nothing imports it, so a violation is found
even in a branch no other test runs. Imports inside functions count (a lazy import is
still a dependency); imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
import json
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "cxlib"

#: The layers, lowest first: a module imports only from its own layer or below.
LAYERS = [
    ("cxlib.errors", "cxlib.config", "cxlib.stats"),
    ("cxlib.syntax", "cxlib.study"),
    ("cxlib.data", "cxlib.simulate"),
    ("cxlib.models",),
    ("cxlib.insights",),
    ("cxlib.plots",),
    ("cxlib.pipeline",),
    ("cxlib.dashboard",),
    ("cxlib.cli",),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(), filename=str(modules()[name]))


def _type_checking_nodes(module: ast.Module) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` blocks."""
    skip: set[int] = set()
    for node in ast.walk(module):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    return skip


def imports_of(name: str) -> list[tuple[str, str, int]]:
    """``(imported module, imported name or "", line)`` for every cxlib import of a module."""
    module = tree(name)
    skip = _type_checking_nodes(module)
    package = name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(module):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "cxlib":
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                out.append((full if full in modules() else source, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((a.name, "", node.lineno) for a in node.names if a.name.startswith("cxlib"))
    return out


def layer(name: str) -> int | None:
    for rank, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return rank
    return None


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name in modules():
        for target, _, _ in imports_of(name):
            if target in modules() and target != name and target != "cxlib":
                graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_find_cycles_finds_one():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_cxlib():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_layers_point_one_way():
    upward = [
        f"{name}:{line} imports {target} (layer {layer(target)} above {layer(name)})"
        for name in modules()
        if layer(name) is not None
        for target, _, line in imports_of(name)
        if layer(target) is not None and layer(target) > layer(name)
    ]
    assert not upward, "\n".join(upward)


def test_every_module_has_a_layer():
    assert [n for n in modules() if n != "cxlib" and layer(n) is None] == []


def test_no_private_name_is_imported_across_modules():
    private = [
        f"{name}:{line} imports {alias} from {source}"
        for name in modules()
        for source, alias, line in imports_of(name)
        if alias.startswith("_") and not alias.startswith("__")
    ]
    assert not private, "\n".join(private)


def private_members() -> dict[str, set[str]]:
    """Private attributes and methods cxlib's classes define, by the module defining them."""
    out: dict[str, set[str]] = defaultdict(set)
    for name in modules():
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.ClassDef):
                for item in ast.walk(node):
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        member = item.name
                    elif isinstance(item, ast.Assign | ast.AnnAssign) and item in node.body:
                        targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                        out[name].update(
                            t.id
                            for t in targets
                            if isinstance(t, ast.Name)
                            and t.id.startswith("_")
                            and not t.id.startswith("__")
                        )
                        continue
                    elif (
                        isinstance(item, ast.Attribute)
                        and isinstance(item.value, ast.Name)
                        and item.value.id == "self"
                        and isinstance(item.ctx, ast.Store)
                    ):
                        member = item.attr
                    else:
                        continue
                    if member.startswith("_") and not member.startswith("__"):
                        out[name].add(member)
    return out


def foreign_private_uses(source: str, here: str, members: dict[str, set[str]]) -> list[str]:
    """``obj._name`` where ``_name`` is private to another cxlib module (not self/cls/super)."""
    own = members.get(here, set())
    elsewhere = set().union(*(v for k, v in members.items() if k != here)) - own
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in elsewhere:
            value = node.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                continue
            if isinstance(value, ast.Call) and ast.unparse(value.func) == "super":
                continue
            hits.append(f"{node.lineno}: {ast.unparse(node)}")
    return hits


def test_foreign_private_uses_are_found():
    members = {"a": {"_secret"}, "b": set()}
    assert foreign_private_uses("x = result._secret()", "b", members) == ["1: result._secret"]
    assert foreign_private_uses("x = self._secret", "b", members) == []


def test_no_private_attribute_is_used_across_modules():
    members = private_members()
    hits = [
        f"{name}:{hit}"
        for name in modules()
        for hit in foreign_private_uses(modules()[name].read_text(), name, members)
    ]
    assert not hits, "\n".join(hits)


def notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            lines.append(
                "\n".join(
                    ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))
                )
            )
    return "\n".join(lines)


NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb")) + sorted(
    (REPO / "dashboards").glob("*.ipynb")
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_use_only_public_names(path):
    members = private_members()
    code = notebook_code(path)
    hits = foreign_private_uses(code, "<notebook>", members)
    tree_ = ast.parse(code)
    for node in ast.walk(tree_):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cxlib"):
            hits += [f"imports {a.name}" for a in node.names if a.name.startswith("_")]
    assert not hits, f"{path.name}: " + "; ".join(hits)


def test_one_fit_and_one_call_of_the_sampler():
    """``pymc.sample`` is called once, in CxModel.sample; a model's own fit only forwards."""
    calls = []
    for name in modules():
        if not name.startswith("cxlib.models"):
            continue
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                "pm.sample",
                "pymc.sample",
            ):
                calls.append(f"{name}:{node.lineno}")
            if (
                isinstance(node, ast.FunctionDef)
                and node.name == "fit"
                and name != "cxlib.models.base"
            ):
                body = [n for n in node.body if not isinstance(n, ast.Expr)]  # drop the docstring
                forwards = "super().fit(" in ast.unparse(body[-1]) if body else False
                assert forwards and len(body) <= 3, (
                    f"{name}:{node.lineno} defines its own fit; the life cycle lives in "
                    "CxModel.fit (override prepare_fit / build_model / sample instead)"
                )
    assert calls == [f"cxlib.models.base:{_line_of_sample_call()}"], calls


def _line_of_sample_call() -> int:
    for node in ast.walk(tree("cxlib.models.base")):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "pm.sample":
            return node.lineno
    return -1


def test_one_summarizer():
    """Intervals come from cxlib.stats: no other module computes an HDI or defines one."""
    hits = []
    for name in modules():
        if name == "cxlib.stats":
            continue
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("az.hdi", "arviz.hdi"):
                hits.append(f"{name}:{node.lineno} calls {ast.unparse(node.func)}")
            if isinstance(node, ast.FunctionDef) and node.name in (
                "hdi",
                "_hdi",
                "summarize_draws",
            ):
                hits.append(f"{name}:{node.lineno} defines {node.name}")
    assert not hits, "\n".join(hits)
