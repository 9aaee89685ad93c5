import pytest

from cxlib.errors import ModelSyntaxError
from cxlib.syntax import parse_model


def test_measurement_regression_covariance_and_defined():
    m = parse_model(
        """
        # a comment
        Image =~ IMG1 + IMG2 +
                 IMG3
        Loyalty =~ 1*L1 + NA*L2 + start(0.7)*L3
        Loyalty ~ b*Image + c*Experience ; Image ~ a*Experience
        IMG1 ~~ IMG2
        indirect := a*b
        total := c + a*b
        """
    )
    assert m.latents == ["Image", "Loyalty"]
    assert m.indicators["Image"] == ["IMG1", "IMG2", "IMG3"]
    loy = [t for t in m.terms if t.lhs == "Loyalty" and t.op == "=~"]
    assert loy[0].fixed == 1.0 and loy[1].free_forced and loy[2].start == 0.7
    regs = {(t.lhs, t.rhs): t.label for t in m.regressions}
    assert regs == {
        ("Loyalty", "Image"): "b",
        ("Loyalty", "Experience"): "c",
        ("Image", "Experience"): "a",
    }
    assert [(t.lhs, t.rhs) for t in m.covariances] == [("IMG1", "IMG2")]
    assert [d.name for d in m.defined] == ["indirect", "total"]
    assert m.defined[1].labels == ("c", "a", "b")
    assert "Experience" in m.observed and "Image" not in m.observed
    assert m.terms[0].line == 3


def test_multiple_lhs_and_intercepts():
    m = parse_model("y1 + y2 ~ x\ny1 ~ 1")
    assert [(t.lhs, t.op, t.rhs) for t in m.terms] == [
        ("y1", "~", "x"),
        ("y2", "~", "x"),
        ("y1", "~1", ""),
    ]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("Image =~ IMG1 + IMG2\nLoyalty Image", 2, "no operator found"),
        ("Image =~ IMG1 + + IMG2", 1, "empty term"),
        ("Image =~ ", 1, "nothing on the right"),
        ("=~ IMG1", 1, "nothing on the left"),
        ("Image =~ IMG1\nx | t1", 2, "thresholds"),
        ("Loyalty ~ 2x", 1, "not a valid variable name"),
        ("Loyalty ~ b*Image\nind := a*b", 2, "'a'"),
        ("Loyalty ~ Loyalty", 1, "regressed on itself"),
        ("Loyalty ~ c(a, b)*Image", 1, "group-specific"),
        ("x := import_os()", 1, "may only use labels"),
    ],
)
def test_errors_say_where(text, line, fragment):
    with pytest.raises(ModelSyntaxError) as info:
        parse_model(text)
    assert info.value.line == line
    assert fragment in str(info.value)
    assert f"line {line}" in str(info.value)


def test_empty_model():
    with pytest.raises(ModelSyntaxError, match="empty"):
        parse_model("# nothing here\n")
