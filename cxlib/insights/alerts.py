"""Alert rules, declared in YAML and evaluated on every refresh.

A rule is one line a CX operations person can read::

    P(NPS < 20) > 0.9                 # threshold: NPS is probably below 20
    P(change(NPS) < -3) > 0.95        # change: NPS probably dropped more than 3 points
    P(satisfaction_top_box <= 30) > 0.8
    P(fix_first) > 0.8                # a driver entered the "fix first" quadrant
    diagnostics_failed                # a model's convergence checks failed

KPI names: ``nps``, ``promoters``, ``passives``, ``detractors``, ``satisfaction_mean``,
``satisfaction_top_box``, ``satisfaction_top2_box``, ``loyalty_index`` (case-insensitive;
``satisfaction`` and ``loyalty`` are accepted for the mean and the index). Each rule is
evaluated per segment (and everyone, ``config.EVERYONE``) in the latest wave unless it names ``segments`` or
``waves`` (``segments`` left out: every segment the study has); the result is a table of
alert records (rule, study, segment, wave, probability, fired, message, status, reason)
that pipelines store and dashboards show. A rule on a KPI the study does not measure (an
NPS rule on a study without an NPS item) is not evaluated and not an error: it gives one
record with ``status`` ``not_applicable`` and the ``reason`` (``status`` is ``evaluated``
otherwise).

The rules' schema (:class:`~cxlib.study.AlertRule`, :func:`~cxlib.study.parse_rule`)
belongs to the study layer, which validates the specs that declare them; this module
evaluates them (and re-exports the schema).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.errors import AlertRuleError
from cxlib.insights.kpis import KPI_LABELS, KpiEstimates
from cxlib.study import AlertRule, ParsedRule, parse_rule

__all__ = [
    "DIGITAL_SIGNAL_RATES",
    "AlertRule",
    "AlertRuleError",
    "ParsedRule",
    "digital_alert_draws",
    "evaluate_alerts",
    "parse_rule",
]

#: The digital metrics that are a signal's rate per session, and their signal.
DIGITAL_SIGNAL_RATES = {
    "rage_click_rate": "rage_clicks",
    "dead_click_rate": "dead_clicks",
    "quick_back_rate": "quick_backs",
    "page_loop_rate": "page_loops",
    "form_error_rate": "form_errors",
}

ALERT_COLUMNS = [
    "rule_name",
    "rule",
    "kind",
    "study",
    "segment",
    "wave",
    "subject",
    "probability",
    "threshold",
    "fired",
    "small_cell",
    "message",
    "status",
    "reason",
]
#: ``status`` of an alert record: the rule was evaluated in its cell, or does not apply.
EVALUATED, NOT_APPLICABLE = "evaluated", "not_applicable"
#: The study spec's ``kpis:`` key each KPI comes from.
_KPI_ROLE = {
    "nps": "nps",
    "promoters": "nps",
    "passives": "nps",
    "detractors": "nps",
    "satisfaction_mean": "satisfaction",
    "satisfaction_top_box": "satisfaction",
    "satisfaction_top2_box": "satisfaction",
    "loyalty_index": "loyalty",
}

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _fmt(x: float) -> str:
    return f"{x:.1f}" if abs(x) < 1000 else f"{x:,.0f}"


def evaluate_alerts(
    rules: list[AlertRule],
    *,
    study: str,
    kpis: KpiEstimates | None = None,
    priorities: pd.DataFrame | None = None,
    diagnostics: dict[str, Any] | None = None,
    digital: dict[str, dict[str, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Evaluate alert rules into alert records.

    Parameters
    ----------
    rules : list of AlertRule
        The declared rules.
    study : str
        The study's name (recorded with each alert).
    kpis : KpiEstimates, optional
        KPI posteriors, for threshold and change rules.
    priorities : pandas.DataFrame, optional
        Driver priorities with columns ``driver, segment, wave, p_fix_first``, for
        ``fix_first`` rules: a driver fires when its probability crosses the threshold
        in a wave and did not in the wave before (it *entered* the quadrant).
    diagnostics : dict, optional
        Model name -> diagnostics (a mapping or object with ``ok`` and optionally
        ``problems``), for ``diagnostics_failed`` rules.
    digital : dict, optional
        Digital metric -> touchpoint (and ``config.EVERYONE``) -> posterior draws
        (:func:`digital_alert_draws`), for rules on a digital metric (e.g.
        ``P(rage_click_rate > 0.3) > 0.9``), evaluated per touchpoint.

    Returns
    -------
    pandas.DataFrame
        One row per rule x cell evaluated, with ``fired`` True for the alerts; columns
        ``rule_name, rule, kind, study, segment, wave, subject, probability, threshold,
        fired, small_cell, message, status, reason``. A KPI rule on a KPI the study
        does not measure gives one row, ``status`` ``not_applicable`` with the
        ``reason`` (not fired).

    Raises
    ------
    AlertRuleError
        When a rule needs inputs that were not given, or names an unknown segment or wave.
    """
    records: list[dict] = []
    for rule in rules:
        parsed = rule.parsed
        if parsed.kind in ("threshold", "change"):
            records += _kpi_alerts(rule, parsed, study, kpis)
        elif parsed.kind == "fix_first":
            records += _fix_first_alerts(rule, parsed, study, priorities)
        elif parsed.kind == "digital":
            records += _digital_alerts(rule, parsed, study, digital)
        else:
            records += _diagnostics_alerts(rule, study, diagnostics)
    for record in records:
        record.setdefault("status", EVALUATED)
        record.setdefault("reason", "")
    return pd.DataFrame.from_records(records, columns=ALERT_COLUMNS)


def _select(rule: AlertRule, labels: list[str], what: str, wanted) -> list[str]:
    if wanted is None or wanted == "all":
        return labels
    if wanted == "latest":
        return labels[-1:]
    unknown = [x for x in wanted if x not in labels]
    if unknown:
        raise AlertRuleError(
            f"alert {rule.name!r}: unknown {what} {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(labels)}"
        )
    return list(wanted)


def _kpi_alerts(rule, parsed: ParsedRule, study, kpis: KpiEstimates | None) -> list[dict]:
    if kpis is None:
        raise AlertRuleError(f"alert {rule.name!r} ({rule.rule}) needs KPI estimates")
    if parsed.kpi not in kpis.draws:
        return [_not_measured(rule, parsed, study, kpis)]
    op, pop = _OPS[parsed.op], _OPS[parsed.prob_op]
    label = KPI_LABELS[parsed.kpi]
    out = []
    draws = kpis.change(parsed.kpi) if parsed.kind == "change" else kpis.draws[parsed.kpi]
    for seg in _select(rule, kpis.segments, "segment", rule.segments):
        for wave in _select(rule, kpis.waves, "wave", rule.waves):
            i, j = kpis.segments.index(seg), kpis.waves.index(wave)
            d = draws[i, j]
            if np.isnan(d).all():
                continue  # first wave has no change; an empty cell has no estimate
            prob = float(op(d, parsed.value).mean())
            fired = bool(pop(prob, parsed.prob))
            n = int(kpis.n[parsed.kpi][i, j])
            small = n < kpis.min_cell_size
            what = (
                f"change in {label} since {kpis.waves[j - 1]}" if parsed.kind == "change" else label
            )
            message = (
                f"{what} {parsed.op} {_fmt(parsed.value)} in {seg}, {wave}: probability "
                f"{prob:.2f} {parsed.prob_op} {parsed.prob:.2f} (estimate {_fmt(float(np.mean(d)))}, n={n})"
            )
            if rule.message:
                message = f"{rule.message} — {message}"
            out.append(
                dict(
                    rule_name=rule.name,
                    rule=rule.rule,
                    kind=parsed.kind,
                    study=study,
                    segment=seg,
                    wave=wave,
                    subject=parsed.kpi,
                    probability=prob,
                    threshold=parsed.prob,
                    fired=fired,
                    small_cell=small,
                    message=message,
                )
            )
    return out


def _not_measured(rule, parsed: ParsedRule, study, kpis: KpiEstimates) -> dict:
    """The record of a KPI rule on a KPI the study does not measure: not applicable."""
    role = _KPI_ROLE.get(parsed.kpi, parsed.kpi)
    label = KPI_LABELS.get(parsed.kpi, parsed.kpi)
    reason = (
        f"the study does not measure {label} (it has: "
        f"{', '.join(KPI_LABELS.get(k, k) for k in kpis.draws) or 'no KPI'}); "
        f"declare it under `kpis: {{{role}: ...}}` in the study spec"
    )
    return dict(
        rule_name=rule.name,
        rule=rule.rule,
        kind=parsed.kind,
        study=study,
        segment=config.EVERYONE,
        wave=config.EVERYONE,
        subject=parsed.kpi,
        probability=np.nan,
        threshold=parsed.prob,
        fired=False,
        small_cell=False,
        message=f"alert {rule.name!r} not evaluated: {reason}",
        status=NOT_APPLICABLE,
        reason=reason,
    )


def _fix_first_alerts(rule, parsed: ParsedRule, study, priorities) -> list[dict]:
    needed = {"driver", "segment", "wave", "p_fix_first"}
    if priorities is None or not needed <= set(priorities.columns):
        raise AlertRuleError(
            f"alert {rule.name!r} ({rule.rule}) needs driver priorities with columns "
            + ", ".join(sorted(needed))
        )
    pop = _OPS[parsed.prob_op]
    waves = list(dict.fromkeys(priorities["wave"].astype(str)))
    segments = list(dict.fromkeys(priorities["segment"].astype(str)))
    out = []
    for seg in _select(rule, segments, "segment", rule.segments):
        part = priorities[priorities["segment"].astype(str) == seg]
        for wave in _select(rule, waves, "wave", rule.waves):
            now = part[part["wave"].astype(str) == wave]
            k = waves.index(wave)
            before = part[part["wave"].astype(str) == waves[k - 1]] if k > 0 else part.iloc[0:0]
            was = dict(zip(before["driver"], before["p_fix_first"], strict=True))
            for driver, prob in zip(now["driver"], now["p_fix_first"], strict=True):
                above = bool(pop(prob, parsed.prob))
                entered = above and not (driver in was and pop(was[driver], parsed.prob))
                out.append(
                    dict(
                        rule_name=rule.name,
                        rule=rule.rule,
                        kind="fix_first",
                        study=study,
                        segment=seg,
                        wave=wave,
                        subject=str(driver),
                        probability=float(prob),
                        threshold=parsed.prob,
                        fired=entered,
                        small_cell=False,
                        message=f"{driver} entered 'fix first' in {seg}, {wave}: probability {prob:.2f}"
                        if entered
                        else f"{driver} in {seg}, {wave}: P(fix first) {prob:.2f}",
                    )
                )
    return out


def _diagnostics_alerts(rule, study, diagnostics) -> list[dict]:
    if diagnostics is None:
        raise AlertRuleError(f"alert {rule.name!r} ({rule.rule}) needs model diagnostics")
    out = []
    for model, diag in diagnostics.items():
        ok = diag.get("ok") if isinstance(diag, dict) else getattr(diag, "ok", None)
        problems = (
            diag.get("problems", []) if isinstance(diag, dict) else getattr(diag, "problems", [])
        )
        if ok is None:
            raise AlertRuleError(f"alert {rule.name!r}: diagnostics of {model!r} have no 'ok' flag")
        out.append(
            dict(
                rule_name=rule.name,
                rule=rule.rule,
                kind="diagnostics",
                study=study,
                segment=config.EVERYONE,
                wave=config.EVERYONE,
                subject=str(model),
                probability=np.nan,
                threshold=np.nan,
                fired=not ok,
                small_cell=False,
                message=f"model {model} failed its convergence checks: {'; '.join(map(str, problems)) or 'see run'}"
                if not ok
                else f"model {model} converged",
            )
        )
    return out


def rules_needing_missing_inputs(
    rules: list[AlertRule],
    *,
    kpis: KpiEstimates | None = None,
    priorities: pd.DataFrame | None = None,
    diagnostics: dict[str, Any] | None = None,
    digital: bool = False,
) -> dict[str, str]:
    """The rules :func:`evaluate_alerts` cannot evaluate with these inputs, and why.

    A pipeline's overview evaluates what it can: a ``fix_first`` rule needs driver
    priorities, ``diagnostics_failed`` needs models' diagnostics, a rule on a digital
    metric the sessions' metrics (``digital``: whether they are given; evaluated by
    ``06-digital-experience``), the others KPIs.

    Returns
    -------
    dict
        Rule name -> what it needs (empty: every rule can be evaluated).
    """
    needs = {
        "threshold": ("KPI estimates", kpis is not None),
        "change": ("KPI estimates", kpis is not None),
        "fix_first": ("driver priorities", priorities is not None and len(priorities) > 0),
        "diagnostics": ("models' diagnostics", bool(diagnostics)),
        "digital": ("the web and app sessions' metrics (06-digital-experience)", digital),
    }
    out = {}
    for rule in rules:
        what, have = needs[rule.parsed.kind]
        if not have:
            out[rule.name] = f"needs {what}"
    return out


def _digital_alerts(rule, parsed: ParsedRule, study, digital) -> list[dict]:
    if digital is None:
        raise AlertRuleError(
            f"alert {rule.name!r} ({rule.rule}) needs the web and app sessions' metrics "
            "(digital_alert_draws)"
        )
    op, pop = _OPS[parsed.op], _OPS[parsed.prob_op]
    out = []
    for touchpoint, d in digital.get(parsed.kpi, {}).items():
        d = np.asarray(d, dtype=float)
        if not np.isfinite(d).any():
            continue
        prob = float(op(d, parsed.value).mean())
        where = "all sessions" if touchpoint == config.EVERYONE else f"touchpoint {touchpoint}"
        message = (
            f"{parsed.kpi} {parsed.op} {_fmt(parsed.value)} in {where}: probability {prob:.2f} "
            f"{parsed.prob_op} {parsed.prob:.2f} (estimate {_fmt(float(np.nanmean(d)))})"
        )
        if rule.message:
            message = f"{rule.message} — {message}"
        out.append(
            dict(
                rule_name=rule.name,
                rule=rule.rule,
                kind="digital",
                study=study,
                segment=config.EVERYONE,
                wave=config.EVERYONE,
                subject=f"{parsed.kpi}: {touchpoint}",
                probability=prob,
                threshold=parsed.prob,
                fired=bool(pop(prob, parsed.prob)),
                small_cell=False,
                message=message,
            )
        )
    return out


def digital_alert_draws(
    result, sessions: pd.DataFrame, *, draws: int = 1000, seed: int = config.DEFAULT_SEED
) -> dict[str, dict[str, np.ndarray]]:
    """Posterior draws of each digital metric, for all sessions and per touchpoint.

    A signal's rate per session (:data:`DIGITAL_SIGNAL_RATES`) is Poisson with a
    Gamma(0.5, 1) prior, so its posterior is Gamma(0.5 + events, 1 + sessions); the
    digital experience score (0-100) and the share of sessions dissatisfied come from the
    calibration's draws (:meth:`~cxlib.models.digital.DigitalExperienceResult.group_draws`).

    Parameters
    ----------
    result : DigitalExperienceResult
        The calibration.
    sessions : pandas.DataFrame
        The sessions scored (signals, ``touchpoint`` and the rating column).
    draws : int
        Draws per metric (the score's are at most the posterior's).
    seed : int
        Random seed of the rates' draws.

    Returns
    -------
    dict
        Metric -> ``{touchpoint or config.EVERYONE: draws}``.
    """
    rng = np.random.default_rng(seed)
    frame = sessions.reset_index(drop=True)
    groups = {config.EVERYONE: np.ones(len(frame), dtype=bool)}
    for touchpoint in sorted(frame["touchpoint"].dropna().astype(str).unique()):
        groups[touchpoint] = (frame["touchpoint"].astype(str) == touchpoint).to_numpy()
    out: dict[str, dict[str, np.ndarray]] = {}
    for metric, signal in DIGITAL_SIGNAL_RATES.items():
        counts = pd.to_numeric(frame[signal], errors="coerce").fillna(0).to_numpy()
        out[metric] = {
            name: rng.gamma(0.5 + counts[mask].sum(), 1.0 / (1.0 + mask.sum()), size=draws)
            for name, mask in groups.items()
        }
    codes = np.concatenate(
        [np.zeros(len(frame), dtype=np.int64)]
        + [
            np.full(int(mask.sum()), k, dtype=np.int64)
            for k, mask in enumerate(list(groups.values())[1:], start=1)
        ]
    )
    rows = np.concatenate(
        [np.arange(len(frame))] + [np.flatnonzero(mask) for mask in list(groups.values())[1:]]
    )
    g = result.group_draws(frame, codes, len(groups), rows=rows, draws=draws)
    lo, hi = result.data.scale_range
    score = 100.0 * (g["mean"] - lo) / (hi - lo)
    out["digital_score"] = {name: score[k] for k, name in enumerate(groups)}
    out["dissatisfied_share"] = {name: g["dissatisfied"][k] for k, name in enumerate(groups)}
    return out
