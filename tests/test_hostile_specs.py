"""Hostile specs are refused quickly with exit 2: alias bombs, huge files, huge ``:=`` powers.

Issue #22, finding 7: a 10 KB YAML alias bomb took 48 s and 5.5 GB before "internal error:
MemoryError"; ``boom := a*9**9**9**9`` passed ``cx validate`` and hung the fit; a 20,000-term
``:=`` ended in "internal error: RecursionError".
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cxlib import config
from cxlib.cli import main
from cxlib.errors import ModelSyntaxError, StudySpecError
from cxlib.study import (
    MAX_SPEC_BYTES,
    YamlLimitError,
    load_study,
    load_yaml,
    study_from_dict,
)
from cxlib.syntax import parse_model

SAMPLE = Path(config.SAMPLE_STUDY)


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A "billion laughs" YAML block: ``width ** levels`` strings from a few hundred bytes."""
    lines = ["x_laughs:", "  a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def ten_kb_bomb() -> str:
    """The issue's case: a 10 KB spec, an alias bomb on top of the sample study's spec."""
    text = alias_bomb() + SAMPLE.read_text()
    return text + "#" * max(0, 10_000 - len(text)) + "\n"


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def sample_spec_with_model_line(line: str) -> str:
    """The sample spec with one more line in its ``model:`` block."""
    text = SAMPLE.read_text()
    marker = "model: |\n"
    assert marker in text
    head, tail = text.split(marker, 1)
    return head + marker + f"  {line}\n" + tail


# ----------------------------------------------------------------------- YAML limits
def test_alias_bomb_is_refused_in_a_fresh_process_with_little_memory(tmp_path):
    """`cx validate` on a 10 KB alias bomb: exit 2 in well under a second, no MemoryError."""
    path = write_spec(tmp_path, ten_kb_bomb())
    assert 9_000 < path.stat().st_size < 12_000
    script = (
        "import resource, sys, time\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))\n"  # 2 GiB at most
        "from cxlib.cli import main\n"
        "import cxlib.data, cxlib.study\n"  # imported first: time the refusal, not imports
        "t = time.perf_counter()\n"
        f"code = main(['validate', '--study', {str(path)!r}])\n"
        "print(f'seconds={time.perf_counter() - t:.3f}', file=sys.stderr)\n"
        "raise SystemExit(code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "internal error" not in proc.stderr
    assert "alias" in proc.stderr and str(path) in proc.stderr
    seconds = float(proc.stderr.split("seconds=")[1].split()[0])
    assert seconds < 1.0


def test_alias_bomb_is_refused_by_load_study_and_load_yaml(tmp_path):
    path = write_spec(tmp_path, ten_kb_bomb())
    start = time.perf_counter()
    with pytest.raises(StudySpecError, match=r"refused \(line \d+\): the aliases .* expand"):
        load_study(path)
    with pytest.raises(YamlLimitError, match="alias bomb"):
        load_yaml(path.read_text())
    assert time.perf_counter() - start < 0.5


def test_a_yaml_limit_is_a_yaml_error_with_a_mark():
    """Code that reports "not valid YAML" (the pipeline spec's loader) reports it too."""
    with pytest.raises(yaml.YAMLError) as info:
        load_yaml(alias_bomb())
    assert info.value.problem_mark.line + 1 >= 2


def test_recursive_alias_is_refused():
    with pytest.raises(YamlLimitError, match="recursive alias"):
        load_yaml("a: &loop [1, *loop]\n")


def test_too_many_aliases_and_too_deep_nesting_are_refused():
    many = "s: &s 1\nl: [" + ", ".join(["*s"] * 1_500) + "]\n"
    with pytest.raises(YamlLimitError, match="more than 1,000 aliases"):
        load_yaml(many)
    deep = "a: " + "[" * 200 + "]" * 200 + "\n"
    with pytest.raises(YamlLimitError, match="nest deeper than 50"):
        load_yaml(deep)


def test_huge_spec_file_is_refused_before_it_is_read(tmp_path, capsys):
    path = write_spec(tmp_path, SAMPLE.read_text() + "#" * (MAX_SPEC_BYTES + 1) + "\n")
    code, _, err = run_cli(capsys, "validate", "--study", str(path))
    assert code == 2
    assert "a study spec has at most 1,000,000" in err


def test_anchors_a_spec_really_uses_still_load(tmp_path):
    text = SAMPLE.read_text().replace(
        "constructs:\n", "x_common: &agree {min: 1, max: 5}\nconstructs:\n", 1
    )
    assert load_yaml("s: &s {min: 1, max: 5}\na: *s\nb: {<<: *s, max: 7}\n") == {
        "s": {"min": 1, "max": 5},
        "a": {"min": 1, "max": 5},
        "b": {"min": 1, "max": 7},
    }
    with pytest.raises(StudySpecError, match="unknown key 'x_common'"):
        load_study(write_spec(tmp_path, text))  # read, then refused for the key, not a limit


def test_shared_references_in_a_dict_are_bounded():
    """A dict built in Python with shared parts (what aliases give) is bounded as well."""
    level: object = ["lol"] * 10
    for _ in range(8):
        level = [level] * 10
    start = time.perf_counter()
    with pytest.raises(StudySpecError, match="more than 100,000 values"):
        study_from_dict({"name": "x", "columns": {}, "constructs": {}, "description": level})
    loop: list = []
    loop.append(loop)
    with pytest.raises(StudySpecError, match="nest deeper than 50"):
        study_from_dict({"name": "x", "columns": {}, "constructs": {}, "description": loop})
    assert time.perf_counter() - start < 0.5


# ------------------------------------------------------------------- defined parameters
BASE = "F =~ a*x1 + b*x2 + x3\nG =~ y1 + y2\nG ~ c*F\n"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("a*9**9**9**9", "the number 3.8742e+08 is beyond 1e+06"),
        ("a*9^9^9^9", "is beyond 1e+06"),
        ("((((9^9)^9)^9)^9)*a", "is beyond 1e+06"),
        ("a^100", "the power 100 is beyond 10"),
        ("a*1e300", "the number 1e+300 is beyond"),
        ("a*(1/0)", "divides by zero"),
        ("a*(-8)^0.5", "is not a real number"),
    ],
)
def test_defined_parameter_constants_and_powers_are_bounded(expression, message):
    start = time.perf_counter()
    with pytest.raises(ModelSyntaxError, match=r"line 4: the defined parameter 'boom'") as info:
        parse_model(BASE + f"boom := {expression}\n")
    assert message in str(info.value)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "expression", ["a*b", "a*b/(1-c)", "a^2 + b^-1", "2^a", "a*-2^2", "0.5*(a+b)", "a*1e6"]
)
def test_ordinary_defined_parameters_still_parse(expression):
    (d,) = parse_model(BASE + f"ok := {expression}\n").defined
    assert d.expression == expression


def test_a_20000_term_defined_parameter_is_a_clear_error():
    with pytest.raises(ModelSyntaxError, match="has 40,001 labels, numbers and operators"):
        parse_model(BASE + "long := a" + " + a" * 20_000 + "\n")
    with pytest.raises(ModelSyntaxError, match="at most 500"):
        parse_model(BASE + "neg := " + "-" * 5_000 + "a\n")
    with pytest.raises(ModelSyntaxError, match="nests 60 parentheses deep"):
        parse_model(BASE + "deep := " + "(" * 60 + "a" + ")" * 60 + "\n")


def test_cx_validate_refuses_the_huge_power_naming_the_line(tmp_path, capsys):
    path = write_spec(tmp_path, sample_spec_with_model_line("boom := 9^9^9^9"))
    start = time.perf_counter()
    code, _, err = run_cli(capsys, "validate", "--study", str(path))
    assert code == 2
    assert "internal error" not in err
    assert "model: model syntax, line 1: the defined parameter 'boom'" in err
    assert time.perf_counter() - start < 5


def test_cx_validate_refuses_the_20000_term_definition(tmp_path, capsys):
    path = write_spec(tmp_path, sample_spec_with_model_line("long := 1" + " + 1" * 20_000))
    code, _, err = run_cli(capsys, "validate", "--study", str(path))
    assert code == 2
    assert "internal error" not in err and "RecursionError" not in err
    assert "line 1: the expression of 'long' has 40,001 labels" in err


def test_pipeline_spec_alias_bomb_is_refused_quickly(tmp_path):
    from cxlib.pipeline.errors import PipelineSpecError
    from cxlib.pipeline.spec import load_pipeline

    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb() + "studies: []\n", encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(PipelineSpecError, match="refused: .*alias"):
        load_pipeline(path)
    assert time.perf_counter() - start < 2.0
    big = tmp_path / "big.yaml"
    big.write_text("#" * 1_000_001 + "\n", encoding="utf-8")
    with pytest.raises(PipelineSpecError, match="at most 1,000,000"):
        load_pipeline(big)
