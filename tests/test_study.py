import textwrap

import pytest

from cxlib.errors import StudySpecError
from cxlib.study import load_study, study_from_dict

BASE = {
    "name": "demo",
    "columns": {"respondent_id": "id", "segments": {"segment": ["A", "B"]}},
    "scales": {"agree5": {"min": 1, "max": 5}},
    "constructs": {
        "Image": {
            "items": {
                "IMG1": {"text": "a", "scale": "agree5"},
                "IMG2": {"text": "b", "scale": "agree5"},
            }
        },
        "Loyalty": {
            "items": {
                "LOY1": {"text": "c", "scale": [1, 5]},
                "LOY2": {"text": "d", "scale": "agree5"},
            }
        },
    },
    "model": "Loyalty ~ b*Image",
}


def spec(**changes):
    raw = {k: v for k, v in BASE.items()}
    raw.update(changes)
    return raw


def test_sample_study_is_valid(study):
    assert study.name == "telecom"
    assert set(study.constructs) == {
        "Experience",
        "Technical",
        "Emotional",
        "Image",
        "Satisfaction",
        "Loyalty",
    }
    assert study.item("NPS").scale.max == 10
    assert study.item("LOY_SWITCH_R").reverse
    assert study.items_tagged(channel="electronic") == [
        "CX_WEB_COMPARE",
        "CX_APP_ORDER",
        "CX_APP_SELFSERVICE",
    ]
    assert study.attributes["understood"].expectation is None
    assert study.data_path.name == "responses.parquet"
    # measurement lines are generated for the constructs the model names
    assert "Experience =~ CX_STORE_ADVICE" in study.lavaan_model
    assert [d.name for d in study.parsed_model.defined] == [
        "indirect_via_image",
        "total_experience",
    ]


def test_scale_names_and_inline_scales_resolve():
    study = study_from_dict(spec())
    assert study.item("LOY1").scale.max == 5
    assert study.lavaan_model.splitlines()[0] == "Loyalty =~ LOY1 + LOY2"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"colums": {}}, "unknown key 'colums'"),
        ({"constructs": {"Image": {"itmes": {}}}}, "did you mean 'items'"),
        ({"constructs": {"Image": {"items": {}}}}, "at least one item"),
        ({"scales": {"agree5": {"min": 5, "max": 5}}}, "min < max"),
        ({"scales": {"agree5": {"min": 5, "max": 1}}}, "min < max"),
        ({"model": "Loyalty ~ Imag"}, "did you mean 'Image'"),
        (
            {"model": "Image =~ IMG1 + IMG9"},
            "item 'IMG9' of 'Image' is in the model but not in the spec",
        ),
        ({"model": "Loyalty ~~ "}, "nothing on the right"),
        ({"items": {"IMG1": {"text": "x", "scale": "agree5"}}}, "declared twice"),
        (
            {"constructs": {"Image": {"items": {"IMG1": {"text": "a", "scale": "agree7"}}}}},
            "unknown scale 'agree7'",
        ),
        ({"columns": {"respondent_id": "IMG1"}}, "both as an item"),
        ({"columns": {"respondent_id": "id", "personal_data": ["IMG1"]}}, "personal data"),
        ({"name": "my study!"}, "use letters"),
        (
            {"items": {"X": {"text": "x", "scale": "agree5", "tags": {"dimension": "techy"}}}},
            "dimension='techy'",
        ),
        (
            {
                "items": {"E1": {"text": "x", "scale": {"min": 1, "max": 7}}},
                "attributes": {
                    "rel": {"dimension": "technical", "perception": "IMG1", "expectation": "E1"}
                },
            },
            "needs one scale",
        ),
        (
            {"attributes": {"rel": {"dimension": "social", "perception": "IMG1"}}},
            "attributes.rel.dimension",
        ),
    ],
)
def test_broken_specs_get_clear_errors(change, fragment):
    with pytest.raises(StudySpecError) as info:
        study_from_dict(spec(**change), source="demo.yaml")
    assert fragment in str(info.value)
    assert str(info.value).startswith("demo.yaml")


def test_duplicate_item_keys_in_yaml(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: demo
            columns: {respondent_id: id}
            constructs:
              Image:
                items:
                  IMG1: {text: a, scale: [1, 5]}
                  IMG1: {text: b, scale: [1, 5]}
            """
        )
    )
    with pytest.raises(
        StudySpecError, match=r"duplicate key 'IMG1' at line 8 \(first given at line 7\)"
    ):
        load_study(path)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "not found"),
        ("", "empty"),
        ("name: [unclosed", "not valid YAML at line 1"),
        ("- a\n- b", "mapping"),
    ],
)
def test_unreadable_spec_files(tmp_path, content, fragment):
    path = tmp_path / "study.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(StudySpecError, match=fragment):
        load_study(path)


def test_the_study_owns_the_alert_rule_schema():
    from cxlib.insights import alerts
    from cxlib.insights.kpis import KPI_LABELS
    from cxlib.study import KPI_NAMES, AlertRule, parse_rule

    assert KPI_NAMES == tuple(KPI_LABELS), "alert rules name the KPIs the insights estimate"
    assert alerts.AlertRule is AlertRule and alerts.parse_rule is parse_rule
    study = study_from_dict(
        spec(alerts=[{"name": "low", "rule": "P(satisfaction < 3) > 0.9", "waves": "all"}])
    )
    assert study.alerts[0].parsed.kpi == "satisfaction_mean"
    with pytest.raises(StudySpecError) as excinfo:
        study_from_dict(spec(alerts=[{"name": "bad", "rule": "P(CSAT < 3) > 0.9"}]))
    assert "unknown KPI 'CSAT'; use one of " + ", ".join(KPI_LABELS) in str(excinfo.value)


def test_did_you_mean_is_one_helper_in_two_forms():
    from cxlib.errors import closest, did_you_mean

    assert did_you_mean("Loyalti", ["Image", "Loyalty"]) == "; did you mean 'Loyalty'?"
    assert did_you_mean("Loyalti", ["Image", "Loyalty"], parens=True) == (
        " (did you mean 'Loyalty'?)"
    )
    assert did_you_mean("Imagery", ["Image"]) == "; did you mean 'Image'?"
    assert did_you_mean("Imagery", ["Image"], cutoff=0.9) == ""
    assert closest(3, [1, 2, 3]) == "3" and closest("x", []) is None


# ------------------------------------------------------------- real exports (issue 17)
@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            {"source": {"missing_values": [-99, 3]}},
            "item 'IMG1' (scale 1-5): the missing-value code 3 (from source.missing_values, "
            "for every item) is a valid answer on that scale",
        ),
        (
            {"items": {"NPS": {"text": "n", "scale": [0, 10], "missing_values": [0]}}},
            "item 'NPS' (scale 0-10): the missing-value code 0 (from the item's own "
            "missing_values) is a valid answer on that scale",
        ),
        (
            {
                "items": {
                    "S": {
                        "text": "s",
                        "scale": {"min": 1, "max": 3, "labels": {1: "no", 2: "maybe", 3: "yes"}},
                        "missing_values": ["Maybe"],
                    }
                }
            },
            "the missing-value code 'Maybe'",
        ),
        (
            {
                "constructs": {
                    **BASE["constructs"],
                    "Price": {"reliability": 1.2, "items": {"P1": {"text": "p", "scale": [1, 5]}}},
                }
            },
            "reliability 1.2 must lie in (0, 1]",
        ),
        (
            {
                "constructs": {
                    **BASE["constructs"],
                    "Price": {"reliability": 0, "items": {"P1": {"text": "p", "scale": [1, 5]}}},
                }
            },
            "reliability 0.0 must lie in (0, 1]",
        ),
        (
            {"roles": {"target": "Loyalti"}},
            "roles.target: 'Loyalti' is not a construct of the spec; did you mean 'Loyalty'?",
        ),
        (
            {"roles": {"touchpoint_outcome": "Satisfaction"}},
            "roles.touchpoint_outcome: 'Satisfaction' is not a construct",
        ),
        (
            {"columns": {"segments": {"region": [1]}, "segment_labels": {"regio": {1: "North"}}}},
            "segment_labels.regio: 'regio' is not a segment column",
        ),
        (
            {"items": {"respondent_id": {"text": "x", "scale": [1, 5]}}, "columns": {}},
            "item 'respondent_id' has the name loaded data give the respondent id column",
        ),
    ],
)
def test_bad_real_export_specs_get_clear_errors(change, fragment):
    with pytest.raises(StudySpecError) as info:
        study_from_dict(spec(**change), source="demo.yaml")
    assert fragment in str(info.value)


def test_missing_codes_add_up_and_may_lie_outside_every_scale():
    study = study_from_dict(
        spec(
            source={"missing_values": [-99, -999, "NA"]},
            items={"NPS": {"text": "n", "scale": [0, 10], "missing_values": [99, "-99"]}},
        )
    )
    assert study.missing_codes("NPS") == [-99, -999, "NA", 99, "-99"]
    assert study.missing_codes("IMG1") == [-99, -999, "NA"]


def test_respondent_id_is_optional():
    study = study_from_dict(spec(columns={}))
    assert study.columns.respondent_id is None and study.columns.rows_numbered
    assert study.columns.id_column == "respondent_id"
    unnamed = study_from_dict(spec(columns={"respondent_id": ""}))
    assert not unnamed.columns.rows_numbered and unnamed.columns.id_column == "respondent_id"
    named = study_from_dict(spec(columns={"respondent_id": "caseid"}))
    assert named.columns.id_column == "caseid"


def test_segment_codes_unquoted_and_with_labels():
    study = study_from_dict(
        spec(
            columns={
                "segments": {"region": {1: "North", 2: "South"}, "plan": [1, 2.0, "B2B"], "x": None}
            },
            source={"wave_order": [2024, 2025]},
        )
    )
    cols = study.columns
    assert cols.segments == {"region": ["North", "South"], "plan": ["1", "2", "B2B"], "x": None}
    assert cols.segment_labels == {"region": {"1": "North", "2": "South"}}
    assert study.source.wave_order == ["2024", "2025"]
    # the spec as data loads back to the same study
    again = study_from_dict(study.to_dict())
    assert again.columns == cols


def test_single_item_notes():
    study = study_from_dict(
        spec(
            constructs={
                **BASE["constructs"],
                "Price": {"reliability": 0.8, "items": {"P1": {"text": "p", "scale": [1, 5]}}},
                "Value": {"items": {"V1": {"text": "v", "scale": [1, 5]}}},
            }
        )
    )
    assert study.single_item_notes == [
        "construct 'Price' has one item (P1): its loading is fixed at 1 and its residual "
        "variance at (1 - 0.8) x the item's variance (from its stated reliability 0.8)",
        "construct 'Value' has one item (V1): its loading is fixed at 1 and its residual "
        "variance at 0 (measured without error; state `reliability:` on the construct to "
        "allow for error)",
    ]


def test_the_own_study_guide_example_is_a_valid_spec():
    import re
    from pathlib import Path

    import yaml

    guide = (Path(__file__).resolve().parent.parent / "docs" / "own-study.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", guide, re.S) if "name:" in b)
    study = study_from_dict(yaml.safe_load(block), source="docs/own-study.md")
    assert study.columns.rows_numbered
    assert study.columns.segments["region"] == ["North", "South"]
    assert study.missing_codes("COMP2") == [-99, -999, "NA", 98]
    assert study.target == "CUSL" and study.label_of("CUSL") == "Loyalty"
    assert study.attributes["fair_price"].expectation is None
    assert len(study.single_item_notes) == 1


def test_models_beyond_reflective_constructs_are_valid_specs():
    """Composites, higher-order constructs, interactions and observed items in a spec's model."""
    raw = spec(
        constructs={
            **BASE["constructs"],
            "Store": {"items": {f"S{i}": {"text": "s", "scale": "agree5"} for i in (1, 2, 3)}},
            "Web": {"items": {f"W{i}": {"text": "w", "scale": "agree5"} for i in (1, 2, 3)}},
        },
        items={"tenure": {"text": "years a customer", "scale": [0, 40]}},
        model=(
            "CX <~ Store + Web\nGlobal =~ Store + Web + Image\n"
            "Loyalty ~ CX + Image + tenure + Image:tenure"
        ),
    )
    study = study_from_dict(raw, source="demo.yaml")
    lavaan = study.lavaan_model
    assert "Store =~ S1 + S2 + S3" in lavaan and "Image =~ IMG1 + IMG2" in lavaan
    assert "CX" not in study.constructs  # the model defines it
    with pytest.raises(StudySpecError, match="'tenur' is neither a construct nor an item"):
        study_from_dict(spec(**{**raw, "model": "Loyalty ~ Image + tenur"}), source="demo.yaml")
