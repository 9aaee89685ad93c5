r"""The parameter structure of a structural equation model, read from lavaan syntax.

:class:`SEMStructure` turns a :class:`~cxlib.syntax.ParsedModel` into the LISREL-style
matrices of an SEM with a mean structure,

.. math::

    \eta = \alpha + B\eta + \zeta,\quad y = \nu + \Lambda\eta + \epsilon,\quad
    \operatorname{Cov}(\zeta) = \Psi,\ \operatorname{Cov}(\epsilon) = \Theta,

applying lavaan's defaults (``sem()``/``cfa()``): item residual variances and
intercepts free, covariances among exogenous latents free, residual covariances
among endogenous latents that predict nothing free, latent means 0. Each latent is
scaled by its first item (``scaling="marker"``, lavaan's default) or by a unit
(residual) variance (``scaling="unit_variance"``, lavaan's ``std.lv=TRUE``; the first
loading is then constrained positive so that chains cannot reflect).

A construct measured by one item gets what lavaan, SmartPLS and seminr give it by
default: its loading fixed at 1 (the marker) and the item's residual variance fixed at
0, the item measuring the construct without error; with a stated reliability ``r``
(``reliability={construct: r}``, the study spec's ``reliability:``) the residual
variance is fixed at ``(1 - r)`` times the item's sample variance instead (set from the
data by :meth:`SEMStructure.fix_single_item_residuals`). A ``~~`` line on the item in
the syntax overrides the default.

Every parameter is a :class:`Param` with its matrix position, its label and either
a fixed value or an index into the vector of free parameters; parameters that share
a label share one free value. :meth:`SEMStructure.check_identification` runs before
sampling and says what to add when the model is not identified.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cxlib.errors import ModelSpecificationError
from cxlib.syntax import ParsedModel

__all__ = ["Param", "SEMStructure", "SCALINGS"]

SCALINGS = ("marker", "unit_variance")

#: the kinds of parameters, and the lavaan operator each is reported with
KINDS = {
    "loading": "=~",
    "path": "~",
    "item_cov": "~~",
    "latent_cov": "~~",
    "intercept": "~1",
    "latent_mean": "~1",
    "interaction": "~",
    "composite_path": "~",
}


@dataclass
class Param:
    """One parameter of the model.

    Attributes
    ----------
    kind : str
        ``loading``, ``path``, ``item_cov``, ``latent_cov``, ``intercept``,
        ``latent_mean``, ``interaction`` or ``composite_path`` (``F ~ X`` for a
        composite ``F``: derived from its indicators' paths, never free itself).
    lhs, op, rhs : str
        The lavaan names (``Image =~ IMG1``, ``Loyalty ~ Image``, ``IMG1 ~~ IMG1``).
    row, col : int
        Position in its matrix (items or latents); ``col`` is -1 for vectors.
    label : str or None
        Label shared by equal parameters.
    fixed : float or None
        Fixed value, or None when free.
    free : int
        Index into the free-parameter vector of its kind (-1 when fixed).
    positive : bool
        Constrained positive (the sign convention on a first loading).
    start : float or None
        Starting value from the syntax.
    parts : tuple of int or None
        For an interaction (``Y ~ X:Z``), the latents whose product it multiplies.
    """

    kind: str
    lhs: str
    op: str
    rhs: str
    row: int
    col: int = -1
    label: str | None = None
    fixed: float | None = None
    free: int = -1
    positive: bool = False
    start: float | None = None
    parts: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        """``lhs op rhs`` as lavaan prints it."""
        return f"{self.lhs} {self.op} {self.rhs}".strip()

    @property
    def is_free(self) -> bool:
        """True when estimated (a ``composite_path`` is derived, not estimated)."""
        return self.fixed is None and self.kind != "composite_path"

    @property
    def is_variance(self) -> bool:
        """True for a variance (``x ~~ x``)."""
        return self.op == "~~" and self.lhs == self.rhs


@dataclass
class SEMStructure:
    """Matrices, parameters and identification of an SEM.

    Use :meth:`from_parsed`. ``params`` lists every parameter in lavaan's order;
    ``free_names[kind]`` names the free values of each kind (one per label).
    """

    parsed: ParsedModel
    items: list[str]
    latents: list[str]
    scaling: str
    params: list[Param] = field(default_factory=list)
    free_names: dict[str, list[str]] = field(default_factory=dict)
    free_positive: dict[str, list[bool]] = field(default_factory=dict)
    free_label: dict[str, list[str | None]] = field(default_factory=dict)
    #: single-item constructs: construct -> its item
    single_items: dict[str, str] = field(default_factory=dict)
    #: stated reliabilities of single-item constructs: construct -> r in (0, 1]
    reliability: dict[str, float] = field(default_factory=dict)
    #: items whose residual variance was fixed by default (not written in the syntax)
    default_residuals: list[str] = field(default_factory=list)
    #: observed variables of regressions, interactions and composites: each is a latent
    #: of the same name, measured without error by the item of that name (name -> item)
    observed: dict[str, str] = field(default_factory=dict)
    #: composites (``F <~ x1 + x2``): composite -> its indicators (observed or latent)
    composites: dict[str, list[str]] = field(default_factory=dict)
    #: exogenous observed variables: like lavaan's ``fixed.x``, their variances and
    #: covariances are fixed at the sample values (:meth:`fix_observed_exogenous`), so
    #: the model is conditional on them
    fixed_x: list[str] = field(default_factory=list)
    #: composites scaled to variance 1 (no weight fixed by the syntax): their weights are
    #: normalized, ``w = v / sqrt(v' Cov(x) v)``, their standardized sum positive
    normalized: list[str] = field(default_factory=list)
    #: higher-order constructs (``g =~ F1 + F2 + F3``): construct -> its first-order ones
    higher_order: dict[str, list[str]] = field(default_factory=dict)
    #: (outcome, predictor) of every entry of B: regressions, composite weights and
    #: second-order loadings
    regression_pairs: list[tuple[str, str]] = field(default_factory=list)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_parsed(
        cls,
        parsed: ParsedModel,
        *,
        scaling: str = "marker",
        reliability: dict[str, float] | None = None,
    ) -> SEMStructure:
        """Read the structure from parsed lavaan syntax, with lavaan's defaults.

        Parameters
        ----------
        parsed : ParsedModel
            From :func:`cxlib.syntax.parse_model`.
        scaling : {"marker", "unit_variance"}
            How each latent gets its scale.
        reliability : dict of str to float, optional
            Stated reliabilities of single-item constructs (construct -> r in (0, 1]):
            the item's residual variance is fixed at ``(1 - r)`` times its sample
            variance (:meth:`fix_single_item_residuals`); without one it is fixed at 0.

        Raises
        ------
        ModelSpecificationError
            For constructs without items, regressions or covariances on observed
            items (not supported), unknown scaling, or a model that is not identified.
        """
        if scaling not in SCALINGS:
            raise ModelSpecificationError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
        declared = parsed.latents
        if not declared:
            raise ModelSpecificationError(
                "the model has no latent variables: add measurement lines such as "
                "'Image =~ IMG1 + IMG2 + IMG3' (or a composite, 'Quality <~ q1 + q2 + q3')"
            )
        declared_set = set(declared)
        items: list[str] = []
        higher: dict[str, list[str]] = {}
        for t in parsed.terms:
            if t.op != "=~":
                continue
            if t.rhs in declared_set:
                higher.setdefault(t.lhs, []).append(t.rhs)
            elif t.rhs not in items:
                items.append(t.rhs)
        composites = parsed.composites
        for lat in higher:
            mixed = [t.rhs for t in parsed.terms if t.op == "=~" and t.lhs == lat]
            odd = [v for v in mixed if v not in declared_set]
            if odd:
                raise ModelSpecificationError(
                    f"line {parsed.lines_for(lat)[0]}: {lat} is measured by constructs "
                    f"({', '.join(higher[lat])}) and by items ({', '.join(odd)}); a higher-order "
                    "construct is measured by first-order constructs only. Give the items a "
                    f"construct of their own ('{lat}_items =~ {' + '.join(odd)}') and add it"
                )
        for lat in composites:
            if lat in higher or any(t.op == "=~" and t.lhs == lat for t in parsed.terms):
                raise ModelSpecificationError(
                    f"line {parsed.lines_for(lat)[0]}: {lat} is both measured ('=~') and formed "
                    "('<~'); a construct is either reflective or a composite. Use one of the two"
                )
        # observed variables in regressions, interactions and composites get a latent of
        # their own name, measured without error by the item of that name
        observed: dict[str, str] = {}
        item_set = set(items)
        uses = [(t, v) for t in parsed.terms if t.op in ("~", "<~") for v in (t.lhs, *t.parts)]
        for t, v in uses:
            if v in declared_set or v in observed:
                continue
            if v in item_set:
                owner = next(x.lhs for x in parsed.terms if x.op == "=~" and x.rhs == v)
                raise ModelSpecificationError(
                    f"line {t.line}: {v!r} is an item of {owner} ('{owner} =~ ... {v}') and "
                    f"also a variable of '{t.lhs} {t.op} {t.rhs}'. Regress on the construct "
                    f"({owner}), or use another column for the observed variable"
                )
            observed[v] = v
        latents = [*declared, *observed]
        items = [*items, *observed]
        latent_set, item_set = set(latents), set(items)
        for t in parsed.terms:
            if t.op == "~~":
                unknown = [v for v in (t.lhs, t.rhs) if v not in latent_set | item_set]
                if unknown:
                    raise ModelSpecificationError(
                        f"line {t.line}: {t.lhs} ~~ {t.rhs}: {', '.join(map(repr, unknown))} is "
                        "neither a latent variable, an item of a measurement line nor an observed "
                        "variable of a regression"
                    )
                kinds = {v in latent_set for v in (t.lhs, t.rhs)}
                if len(kinds) > 1:
                    raise ModelSpecificationError(
                        f"line {t.line}: {t.lhs} ~~ {t.rhs}: a covariance between an item and a "
                        "latent variable is not supported"
                    )
            if t.op == "~1":
                raise ModelSpecificationError(
                    f"line {t.line}: intercepts ('{t.lhs} ~ 1') are estimated automatically "
                    "(item intercepts free, latent means 0 or free across groups); remove the line"
                )
        reliability = dict(reliability or {})
        s = cls(parsed=parsed, items=items, latents=latents, scaling=scaling)
        s.observed, s.composites, s.higher_order = observed, composites, higher
        s.single_items = {}
        for lat in declared:
            ind = [t.rhs for t in parsed.terms if t.op == "=~" and t.lhs == lat]
            if len(ind) == 1 and lat not in higher:
                s.single_items[lat] = ind[0]
        for lat, r in reliability.items():
            if lat not in s.single_items:
                what = (
                    "is not a construct of the model"
                    if lat not in latent_set
                    else ("has several items, whose reliability the model estimates")
                )
                raise ModelSpecificationError(
                    f"reliability[{lat!r}]: a reliability is stated for single-item "
                    f"constructs only; {lat!r} {what} (single-item constructs: "
                    f"{sorted(s.single_items) or 'none'})"
                )
            try:
                value = float(r)
            except (TypeError, ValueError):
                value = float("nan")
            if not 0 < value <= 1:
                raise ModelSpecificationError(
                    f"reliability[{lat!r}] = {r!r} must lie in (0, 1]: the share of the "
                    "item's variance that is the construct's (1 = measured without error)"
                )
            reliability[lat] = value
        s.reliability = reliability
        s._collect()
        return s

    def _collect(self) -> None:
        parsed, items, latents = self.parsed, self.items, self.latents
        ii = {v: i for i, v in enumerate(items)}
        li = {v: i for i, v in enumerate(latents)}
        params: list[Param] = []

        # loadings, with the scale convention on each latent's first loading
        for lat in latents:
            if lat in self.observed:
                it = self.observed[lat]
                params.append(Param("loading", lat, "=~", it, ii[it], li[lat], fixed=1.0))
                continue
            terms = [t for t in parsed.terms if t.op == "=~" and t.lhs == lat and t.rhs not in li]
            seen: set[str] = set()
            for k, t in enumerate(terms):
                if t.rhs in seen:
                    raise ModelSpecificationError(f"line {t.line}: {lat} =~ {t.rhs} appears twice")
                seen.add(t.rhs)
                fixed = t.fixed
                positive = False
                if k == 0 and fixed is None:
                    if self.scaling == "marker" and not t.free_forced:
                        fixed = 1.0
                    else:
                        positive = True
                params.append(
                    Param(
                        "loading",
                        lat,
                        "=~",
                        t.rhs,
                        ii[t.rhs],
                        li[lat],
                        t.label,
                        fixed,
                        positive=positive,
                        start=t.start,
                    )
                )
        # paths: regressions, composite weights ('F <~ x': B[F, x]) and second-order
        # loadings ('g =~ F1': B[F1, g]); the first weight or loading of each is fixed at 1
        seen_paths: set[tuple[str, str]] = set()

        def add_path(t, outcome: str, predictor: str, first: bool) -> None:
            if (outcome, predictor) in seen_paths:
                raise ModelSpecificationError(
                    f"line {t.line}: {t.lhs} {t.op} {t.rhs} appears twice (or repeats a "
                    f"regression of {outcome} on {predictor})"
                )
            seen_paths.add((outcome, predictor))
            fixed = t.fixed
            if first and fixed is None and not t.free_forced:
                fixed = 1.0
            params.append(
                Param(
                    "path",
                    t.lhs,
                    t.op,
                    t.rhs,
                    li[outcome],
                    li[predictor],
                    t.label,
                    fixed,
                    start=t.start,
                )
            )

        # a composite as an outcome ('F ~ X'): F stays the weighted sum of its indicators,
        # the indicators are regressed on X, and 'F ~ X' is reported as the regression of
        # the composite on X (sum_j w_j * (x_j ~ X), kind "composite_path")
        explained = {}
        for t in parsed.regressions:
            if t.lhs in self.composites and t.is_interaction:
                raise ModelSpecificationError(
                    f"line {t.line}: {t.lhs} ~ {t.rhs}: a composite cannot be the outcome of a "
                    "product term yet; use a reflective construct for the outcome"
                )
            if t.lhs in self.composites:
                explained.setdefault(t.lhs, []).append(t)
                continue
            if not t.is_interaction:
                add_path(t, t.lhs, t.rhs, first=False)
        for comp, terms in explained.items():
            for t in terms:
                if t.label or t.fixed is not None:
                    raise ModelSpecificationError(
                        f"line {t.line}: {t.lhs} ~ {t.rhs}: the regression of a composite is "
                        "derived from its indicators' regressions, so it cannot be labelled or "
                        "fixed; label the indicators' paths instead"
                    )
                for x in self.composites[comp]:
                    if (x, t.rhs) not in seen_paths:
                        seen_paths.add((x, t.rhs))
                        params.append(Param("path", x, "~", t.rhs, li[x], li[t.rhs]))
                params.append(Param("composite_path", t.lhs, "~", t.rhs, li[t.lhs], li[t.rhs]))
        # a composite without a weight fixed in the syntax has variance 1: its weights are
        # normalized by the model, their standardized sum positive (the composite's sign)
        self.normalized = []
        for comp in self.composites:
            terms = [t for t in parsed.terms if t.op == "<~" and t.lhs == comp]
            scaled = any(t.fixed not in (None, 0.0) for t in terms)
            if not scaled:
                self.normalized.append(comp)
            for t in terms:
                add_path(t, comp, t.rhs, first=False)
        for lat, firsts in self.higher_order.items():
            for t in (t for t in parsed.terms if t.op == "=~" and t.lhs == lat and t.rhs in li):
                add_path(t, t.rhs, lat, first=t.rhs == firsts[0])
        seen_products: set[tuple[str, frozenset]] = set()
        for t in parsed.interactions:
            key = (t.lhs, frozenset(t.parts) if len(set(t.parts)) > 1 else frozenset([t.rhs]))
            if key in seen_products:
                raise ModelSpecificationError(f"line {t.line}: {t.lhs} ~ {t.rhs} appears twice")
            seen_products.add(key)
            a, b = t.parts
            params.append(
                Param(
                    "interaction",
                    t.lhs,
                    "~",
                    t.rhs,
                    li[t.lhs],
                    label=t.label,
                    fixed=t.fixed,
                    start=t.start,
                    parts=(li[a], li[b]),
                )
            )
        self.regression_pairs = [
            (latents[p.row], latents[p.col]) for p in params if p.kind == "path"
        ]
        endogenous = {o for o, _ in self.regression_pairs} | {t.lhs for t in parsed.interactions}
        predictors = {x for _, x in self.regression_pairs} | {
            v for t in parsed.interactions for v in t.parts
        }
        self._check_acyclic()

        # user covariances, keyed by unordered pair
        user_cov: dict[frozenset, object] = {}
        for t in parsed.covariances:
            key = frozenset((t.lhs, t.rhs))
            if key in user_cov:
                raise ModelSpecificationError(f"line {t.line}: {t.lhs} ~~ {t.rhs} appears twice")
            user_cov[key] = t

        def cov_param(kind, a, b, idx, default_fixed=None, user=None):
            t = user
            fixed = default_fixed if t is None else t.fixed
            if t is not None and t.free_forced:
                fixed = None
            return Param(
                kind,
                a,
                "~~",
                b,
                idx[a],
                idx[b],
                None if t is None else t.label,
                fixed,
                start=None if t is None else t.start,
            )

        # item residual variances and covariances; the item of a single-item construct
        # measures it without error (0) unless the syntax says otherwise
        single = {it: lat for lat, it in self.single_items.items()}
        self.default_residuals = []
        for it in items:
            if it in self.observed:
                # measured without error; a '~~' line on the name is its latent's (co)variance
                params.append(Param("item_cov", it, "~~", it, ii[it], ii[it], fixed=0.0))
                continue
            user = user_cov.pop(frozenset((it,)), None)
            default = None
            if it in single and user is None:
                default = 0.0
                self.default_residuals.append(it)
            params.append(cov_param("item_cov", it, it, ii, default, user))
        for key, t in list(user_cov.items()):
            if len(key) == 2 and all(v in ii and v not in self.observed for v in key):
                a, b = sorted(key, key=lambda v: ii[v])
                params.append(cov_param("item_cov", a, b, ii, None, t))
                user_cov.pop(key)
        # latent variances: a composite has no disturbance (0); an observed variable and a
        # higher-order construct keep their variance free (their scale is a fixed 1)
        exo = [v for v in latents if v not in endogenous]
        self.fixed_x = [v for v in exo if v in self.observed]
        for lat in latents:
            default = 1.0 if self.scaling == "unit_variance" else None
            if lat in self.composites:
                default = 0.0
            elif lat in self.fixed_x:
                default = 1.0  # the sample variance, set from the data
            elif lat in self.observed or lat in self.higher_order:
                default = None
            params.append(
                cov_param(
                    "latent_cov", lat, lat, li, default, user_cov.pop(frozenset((lat,)), None)
                )
            )
        # latent covariances: exogenous pairs and pure-outcome residual pairs by default
        first_order = {f for fs in self.higher_order.values() for f in fs}
        pure_y = [
            v
            for v in latents
            if v in endogenous
            and v not in predictors
            and v not in first_order
            and v not in self.composites
        ]
        # the indicators of a composite that is explained covary freely given its predictors
        formed_outcomes = [self.composites[c] for c in explained]
        fixed_x = set(self.fixed_x)
        for group in (exo, pure_y, *formed_outcomes):
            for i, a in enumerate(group):
                for b in group[i + 1 :]:
                    default = 0.0 if {a, b} <= fixed_x else None  # the sample covariance
                    params.append(
                        cov_param(
                            "latent_cov", a, b, li, default, user_cov.pop(frozenset((a, b)), None)
                        )
                    )
        for key, t in list(user_cov.items()):
            a, b = sorted(key, key=lambda v: li[v])
            params.append(cov_param("latent_cov", a, b, li, None, t))
        # intercepts of items (free); latent means fixed 0 (freed per group by the model)
        for it in items:
            params.append(Param("intercept", it, "~1", "", ii[it]))
        for lat in latents:
            params.append(Param("latent_mean", lat, "~1", "", li[lat], fixed=0.0))
        self.params = params
        self._number_free()

    def _number_free(self) -> None:
        self.free_names = {k: [] for k in KINDS}
        self.free_positive = {k: [] for k in KINDS}
        self.free_label = {k: [] for k in KINDS}
        by_label: dict[str, tuple[str, int]] = {}
        for p in self.params:
            if not p.is_free:
                p.free = -1
                continue
            if p.label is not None and p.label in by_label:
                kind, idx = by_label[p.label]
                if kind != p.kind:
                    raise ModelSpecificationError(
                        f"the label {p.label!r} is used on a {kind.replace('_', ' ')} and on "
                        f"{p.name} (a {p.kind.replace('_', ' ')}); equal parameters must be of "
                        "one kind"
                    )
                if p.is_variance != (
                    self.free_names[kind][idx].split(" ~~ ")[0]
                    == self.free_names[kind][idx].split(" ~~ ")[-1]
                ):
                    raise ModelSpecificationError(
                        f"the label {p.label!r} joins a variance and a covariance"
                    )
                p.free = idx
                continue
            p.free = len(self.free_names[p.kind])
            self.free_names[p.kind].append(p.name)
            self.free_positive[p.kind].append(p.positive)
            self.free_label[p.kind].append(p.label)
            if p.label is not None:
                by_label[p.label] = (p.kind, p.free)

    def predecessors(self) -> dict[str, set[str]]:
        """Each latent's direct predictors: paths, composite indicators, interaction parts."""
        preds: dict[str, set[str]] = {}
        for outcome, predictor in self.regression_pairs:
            preds.setdefault(outcome, set()).add(predictor)
        for t in self.parsed.interactions:
            preds.setdefault(t.lhs, set()).update(t.parts)
        return preds

    def _check_acyclic(self) -> None:
        preds = self.predecessors()
        state: dict[str, int] = {}

        def visit(v: str, stack: list[str]) -> None:
            if state.get(v) == 1:
                cycle = stack[stack.index(v) :] + [v]
                raise ModelSpecificationError(
                    "the regressions form a loop (" + " <- ".join(cycle) + "); cxlib fits "
                    "recursive models only"
                )
            if state.get(v) == 2:
                return
            state[v] = 1
            for w in preds.get(v, ()):
                visit(w, [*stack, v])
            state[v] = 2

        for v in list(preds):
            visit(v, [])

    # ------------------------------------------------------------------ queries
    @property
    def depth(self) -> int:
        """Length of the longest chain of regressions between latents (``B^(depth+1) = 0``)."""
        preds: dict[str, set[str]] = {}
        for outcome, predictor in self.regression_pairs:
            preds.setdefault(outcome, set()).add(predictor)
        memo: dict[str, int] = {}

        def depth(v: str) -> int:
            if v not in memo:
                memo[v] = 0 if v not in preds else 1 + max(depth(w) for w in preds[v])
            return memo[v]

        return max([depth(v) for v in self.latents] + [0])

    @property
    def n_items(self) -> int:
        """Number of observed items."""
        return len(self.items)

    @property
    def n_latents(self) -> int:
        """Number of latent variables."""
        return len(self.latents)

    @property
    def endogenous(self) -> list[str]:
        """Latents that are regressed on others (or formed by, or measured by, others)."""
        lhs = set(self.predecessors())
        return [v for v in self.latents if v in lhs]

    @property
    def exogenous(self) -> list[str]:
        """Latents that are not regressed on others."""
        lhs = set(self.predecessors())
        return [v for v in self.latents if v not in lhs]

    def indicators(self, latent: str) -> list[str]:
        """Items loading on ``latent`` (none for a composite or a higher-order construct)."""
        return [p.rhs for p in self.params if p.kind == "loading" and p.lhs == latent]

    @property
    def interactions(self) -> list[Param]:
        """The product terms (``Y ~ X:Z``), kind ``interaction``."""
        return self.of_kind("interaction")

    @property
    def constructs(self) -> list[str]:
        """The latents that are constructs of the study: not the observed variables."""
        return [v for v in self.latents if v not in self.observed]

    @property
    def reflective(self) -> list[str]:
        """Constructs measured by items (reflective, first order)."""
        return [
            v
            for v in self.latents
            if v not in self.observed and v not in self.composites and v not in self.higher_order
        ]

    def of_kind(self, kind: str) -> list[Param]:
        """Parameters of one kind, in order."""
        return [p for p in self.params if p.kind == kind]

    @property
    def n_free(self) -> int:
        """Number of free parameters (one per label; a normalized composite's weights count one less)."""
        return sum(len(v) for v in self.free_names.values()) - len(self.normalized)

    @property
    def n_moments(self) -> int:
        """Sample moments: p(p+1)/2 covariances plus p means, less the fixed.x block."""
        p = self.n_items
        return p * (p + 1) // 2 + p - self.n_fixed_x_moments

    @property
    def n_fixed_x_moments(self) -> int:
        """The (co)variances of the exogenous observed variables, fixed at the sample's."""
        k = len(self.fixed_x)
        return k * (k + 1) // 2

    def fix_observed_exogenous(self, covariance: dict[tuple[str, str], float]) -> None:
        """Fix the exogenous observed variables' (co)variances at the sample values.

        Parameters
        ----------
        covariance : dict
            ``(a, b) -> sample covariance`` (data scale) for every pair of
            :attr:`fixed_x` (both orders not needed), variances as ``(a, a)``.
            Entries the syntax frees or fixes itself are left alone.
        """
        fixed_x = set(self.fixed_x)
        user = {frozenset((t.lhs, t.rhs)) for t in self.parsed.covariances}
        for prm in self.of_kind("latent_cov"):
            pair = (prm.lhs, prm.rhs)
            if set(pair) <= fixed_x and frozenset(pair) not in user:
                value = covariance.get(pair, covariance.get(pair[::-1]))
                prm.fixed = float(value)

    @property
    def df(self) -> int:
        """Degrees of freedom of the means and covariances (moments minus free parameters).

        Product terms (``Y ~ X:Z``) are left out: they leave the means and covariances
        of the items unchanged up to the outcome's intercept and variance and are
        identified by the higher moments the latent-score likelihood uses.
        """
        return self.n_moments - (self.n_free - len(self.free_names.get("interaction", [])))

    def fix_single_item_residuals(self, item_variance: dict[str, float]) -> dict[str, float]:
        """Fix the residual variances of single-item constructs with a stated reliability.

        Parameters
        ----------
        item_variance : dict of str to float
            The items' sample variances (on the data's scale).

        Returns
        -------
        dict of str to float
            Item -> the residual variance fixed, ``(1 - r) * variance`` (0 for r = 1).
            Items without a stated reliability keep their residual variance of 0.
        """
        out = {}
        for lat, r in self.reliability.items():
            item = self.single_items[lat]
            if item not in self.default_residuals:
                continue  # the syntax fixes or frees it
            prm = next(p for p in self.params if p.kind == "item_cov" and p.lhs == item == p.rhs)
            prm.fixed = float((1.0 - r) * item_variance[item])
            out[item] = prm.fixed
        return out

    def _outgoing(self, lat: str) -> list[str]:
        """What ``lat`` predicts (paths and interactions it is a part of)."""
        out = [o for o, x in self.regression_pairs if x == lat]
        out += [t.lhs for t in self.parsed.interactions if lat in t.parts]
        return out

    def _formed_or_higher_problems(self, lat: str, var: Param) -> list[str]:
        """Scale and identification of a composite or a higher-order construct."""
        problems = []
        if lat in self.composites:
            members = self.composites[lat]
            weights = [p for p in self.params if p.kind == "path" and p.op == "<~" and p.lhs == lat]
            fixed = any(p.fixed not in (None, 0.0) for p in weights)
            outgoing = self._outgoing(lat)
            if not outgoing:
                problems.append(
                    f"the composite {lat} ({lat} <~ {' + '.join(members)}) predicts nothing, so "
                    "its weights cannot be estimated: a composite is identified by what it "
                    f"explains. Add a regression on it ('Loyalty ~ {lat}'), or drop the line"
                )
            elif var.is_free and len(set(outgoing)) < 2:
                problems.append(
                    f"the composite {lat} has a disturbance ('{lat} ~~ {lat}' is free) and "
                    f"predicts only {outgoing[0]}: a composite with a disturbance needs two or "
                    "more outgoing paths (the 2+ emitted paths rule). Remove the "
                    f"'{lat} ~~ {lat}' line (no disturbance, the default) or add a path"
                )
            free = [p for p in weights if p.is_free]
            if not fixed and not free:
                problems.append(f"{lat} has no free weight: free one ('{lat} <~ NA*{members[0]}')")
            return problems
        members = self.higher_order[lat]
        loads = [p for p in self.params if p.kind == "path" and p.op == "=~" and p.lhs == lat]
        fixed = any(p.fixed not in (None, 0.0) for p in loads)
        if not fixed and var.is_free:
            problems.append(
                f"{lat} has no scale: fix one loading ('{lat} =~ 1*{members[0]} + ...') or "
                f"its variance ('{lat} ~~ 1*{lat}')"
            )
        free = [p for p in loads if p.is_free]
        # equal loadings (a shared label) or a second fixed loading constrain the model
        labels = [p.label for p in loads if p.label]
        constrained = (
            len({p.free for p in free}) < len(free)
            or len(free) < len(loads) - 1
            or any(labels.count(p.label) > 1 for p in free if p.label)
        )
        if len(members) < 3 and not constrained:
            problems.append(
                f"the second-order construct {lat} has {len(members)} first-order constructs "
                f"({', '.join(members)}): with fewer than three it is not identified on its own. "
                f"Add a third, give the loadings one label ('{lat} =~ l*{members[0]} + "
                f"l*{members[-1]}'), fix one more loading, or model the first-order "
                f"constructs as correlated ('{members[0]} ~~ {members[-1]}') instead"
            )
        return problems

    def _interaction_problems(self) -> list[str]:
        """An interaction needs its parts as main effects of the same outcome."""
        problems = []
        direct = set(self.regression_pairs)
        for t in self.parsed.interactions:
            missing = [v for v in dict.fromkeys(t.parts) if (t.lhs, v) not in direct]
            if missing:
                add = " + ".join(missing)
                problems.append(
                    f"line {t.line}: {t.lhs} ~ {t.rhs}: the interaction's parts must also be "
                    f"predictors of {t.lhs} (the slope of {t.parts[0]} at {t.parts[1]} = 0 is "
                    f"otherwise forced to 0). Add '{t.lhs} ~ {add}'"
                )
        return problems

    def check_identification(self) -> None:
        """Fail before sampling when the model cannot be identified.

        Checks that each latent has a scale (a fixed loading or a fixed variance),
        that one-item constructs keep a fixed residual variance, and that
        the degrees of freedom are not negative.

        Raises
        ------
        ModelSpecificationError
            Saying what to add.
        """
        problems = []
        for lat in self.latents:
            if lat in self.observed:
                continue
            var = next(p for p in self.params if p.kind == "latent_cov" and p.lhs == lat == p.rhs)
            if lat in self.composites or lat in self.higher_order:
                problems.extend(self._formed_or_higher_problems(lat, var))
                continue
            loads = [p for p in self.params if p.kind == "loading" and p.lhs == lat]
            has_fixed_loading = any(p.fixed not in (None, 0.0) for p in loads)
            if len(loads) == 1:
                item = loads[0].rhs
                resid = next(
                    p for p in self.params if p.kind == "item_cov" and p.lhs == item == p.rhs
                )
                if resid.is_free:
                    problems.append(
                        f"{lat} has one item ({item}) whose residual variance the syntax frees: "
                        "a single item cannot separate the construct from measurement error. "
                        f"Remove the '{item} ~~ {item}' line (the residual variance is then "
                        "fixed at 0, or set from a stated reliability), fix it "
                        f"('{item} ~~ 0.2*{item}'), or add items"
                    )
                    continue
            if not has_fixed_loading and var.is_free:
                problems.append(
                    f"{lat} has no scale: fix one loading ('{lat} =~ 1*{loads[0].rhs} + ...') or "
                    f"its variance ('{lat} ~~ 1*{lat}'), or use scaling='unit_variance'"
                )
        problems.extend(self._interaction_problems())
        if problems:
            raise ModelSpecificationError(
                "the model is not identified:\n  - " + "\n  - ".join(problems)
            )
        if self.df < 0:
            raise ModelSpecificationError(
                f"the model is not identified: it has {self.n_moments - self.df} free "
                "parameters (besides any product terms) but "
                f"{self.n_items} items give only {self.n_moments} means and covariances "
                f"(degrees of freedom {self.df}). Fix parameters (e.g. equal loadings with a "
                "shared label) or add items"
            )
