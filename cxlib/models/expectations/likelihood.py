r"""Row-wise likelihoods of :class:`~cxlib.models.expectations.ExpectationsModel` as one Op.

Two parts of the expectations model cannot be reduced to sufficient statistics:

* respondents with a missing expectation or perception answer, whose likelihood is a
  mixture over the likely values of the missing answers
  (:mod:`.missing`);
* every respondent of an ordinal outcome (``family="ordinal"``): the ordered-logistic
  likelihood is not quadratic in the coefficients.

Both are sums over rows of ``log sum_k pi_k p(y | eta_k)``, where row ``r`` has
``K_r >= 1`` combinations (a complete row has one) and
``eta_k = x_r @ beta[g_r] + sum_t (shortfall_kt * beta[g_r, 1 + a_t] + surplus_kt *
beta[g_r, 1 + A + a_t])``. :class:`MixtureLoglik` evaluates the sum *and its
gradient* in one compiled (numba) pass over the rows, so that PyTensor's graph holds
one node instead of dozens of element-wise operations over padded arrays (40 times
faster for 5,000 incomplete respondents).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

__all__ = ["MixtureLoglik", "MixtureRows", "concat_rows"]


@dataclass
class MixtureRows:
    """Rows for :class:`MixtureLoglik`, compact (the kernel streams through them once).

    Attributes
    ----------
    x : numpy.ndarray
        ``(R, 1 + 2A)`` float32 features with the affected attributes' gaps at zero.
    y : numpy.ndarray
        ``(R,)`` outcome: standardized (normal) or the answer's index ``0..C`` (ordinal).
    w : numpy.ndarray
        ``(R,)`` likelihood weights.
    segment : numpy.ndarray
        ``(R,)`` segment codes.
    attribute : numpy.ndarray
        ``(R, E)`` affected attributes, the first ``n_affected[r]`` of each row valid.
    n_affected : numpy.ndarray
        ``(R,)`` number of affected attributes per row (0 for a complete row).
    offsets : numpy.ndarray
        ``(R + 1,)`` row ``r``'s combinations are ``offsets[r]:offsets[r + 1]``.
    gap : numpy.ndarray
        float32, row by row and combination by combination, the ``n_affected[r]`` gaps
        of the combination (shortfall ``max(-gap, 0)``, surplus ``max(gap, 0)``).
    logp : numpy.ndarray
        ``(C,)`` float32 log probability of each combination (0 for a complete row).
    """

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    segment: np.ndarray
    attribute: np.ndarray
    n_affected: np.ndarray
    offsets: np.ndarray
    gap: np.ndarray
    logp: np.ndarray

    @classmethod
    def complete(cls, x, y, w, segment) -> MixtureRows:
        """Rows without missing answers: one combination each."""
        R = len(y)
        return cls(
            x=np.ascontiguousarray(x, dtype=np.float32),
            y=np.asarray(y, dtype=float),
            w=np.asarray(w, dtype=float),
            segment=np.asarray(segment, dtype=np.int64),
            attribute=np.zeros((R, 1), dtype=np.int64),
            n_affected=np.zeros(R, dtype=np.int64),
            offsets=np.arange(R + 1, dtype=np.int64),
            gap=np.zeros(0, dtype=np.float32),
            logp=np.zeros(R, dtype=np.float32),
        )

    @classmethod
    def from_incomplete(cls, inc) -> MixtureRows:
        """From :class:`~.expectations_missing.IncompleteRows` (combinations sorted by row)."""
        counts = np.bincount(inc.combo_row, minlength=inc.n_rows)
        n_aff = (inc.attribute >= 0).sum(1)
        gaps = inc.combo_surplus - inc.combo_shortfall  # (C, E)
        keep = np.arange(gaps.shape[1])[None, :] < n_aff[inc.combo_row][:, None]
        return cls(
            x=np.ascontiguousarray(inc.x, dtype=np.float32),
            y=np.asarray(inc.y, dtype=float),
            w=np.asarray(inc.w, dtype=float),
            segment=np.asarray(inc.segment, dtype=np.int64),
            attribute=np.ascontiguousarray(np.maximum(inc.attribute, 0), dtype=np.int64),
            n_affected=n_aff.astype(np.int64),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            gap=np.ascontiguousarray(gaps[keep], dtype=np.float32),
            logp=np.asarray(inc.combo_logp, dtype=np.float32),
        )


def concat_rows(a: MixtureRows, b: MixtureRows) -> MixtureRows:
    """Rows of ``a`` then ``b``."""
    E = max(a.attribute.shape[1], b.attribute.shape[1])

    def pad(arr):
        out = np.zeros((arr.shape[0], E), dtype=arr.dtype)
        out[:, : arr.shape[1]] = arr
        return out

    return MixtureRows(
        x=np.vstack([a.x, b.x]),
        y=np.concatenate([a.y, b.y]),
        w=np.concatenate([a.w, b.w]),
        segment=np.concatenate([a.segment, b.segment]),
        attribute=np.vstack([pad(a.attribute), pad(b.attribute)]),
        n_affected=np.concatenate([a.n_affected, b.n_affected]),
        offsets=np.concatenate([a.offsets, a.offsets[-1] + b.offsets[1:]]),
        gap=np.concatenate([a.gap, b.gap]),
        logp=np.concatenate([a.logp, b.logp]),
    )


# ---------------------------------------------------------------------------- kernels
@numba.njit(cache=True, inline="always")
def _base_eta(r, beta, x, g):
    base = 0.0
    for k in range(x.shape[1]):
        base += x[r, k] * beta[g, k]
    return base


@numba.njit(cache=True, inline="always")
def _combo_eta(r, p, n, g, base, beta, attribute, gap, A):
    """The combination's linear predictor; its gaps are ``gap[p:p + n]``."""
    eta = base
    for t in range(n):
        v = np.float64(gap[p + t])
        a = attribute[r, t]
        # shortfall max(-v, 0) times the (negative) penalty slope, surplus times the
        # reward slope; branch-free (the sign of v is unpredictable)
        eta += max(-v, 0.0) * beta[g, 1 + a] + max(v, 0.0) * beta[g, 1 + A + a]
    return eta


@numba.njit(cache=True, inline="always")
def _scatter(r, p, n, g, d_eta, dbeta, attribute, gap, A):
    for t in range(n):
        v = np.float64(gap[p + t])
        a = attribute[r, t]
        dbeta[g, 1 + a] += d_eta * max(-v, 0.0)
        dbeta[g, 1 + A + a] += d_eta * max(v, 0.0)


@numba.njit(cache=True)
def _normal(beta, sigma, x, y, w, segment, attribute, n_affected, offsets, gap, logp):
    R = y.shape[0]
    A = (x.shape[1] - 1) // 2
    dbeta = np.zeros(beta.shape)
    dsigma = 0.0
    total = 0.0
    kmax = 1
    for r in range(R):
        kmax = max(kmax, offsets[r + 1] - offsets[r])
    lk = np.empty(kmax)
    zk = np.empty(kmax)
    inv = 1.0 / sigma
    const = -np.log(sigma) - 0.5 * np.log(2.0 * np.pi)
    p_row = 0
    for r in range(R):
        g = segment[r]
        base = _base_eta(r, beta, x, g)
        n = n_affected[r]
        lo, hi = offsets[r], offsets[r + 1]
        m = -np.inf
        p = p_row
        for c in range(lo, hi):
            eta = _combo_eta(r, p, n, g, base, beta, attribute, gap, A)
            p += n
            z = (y[r] - eta) * inv
            lk[c - lo] = logp[c] - 0.5 * z * z
            zk[c - lo] = z
            m = max(m, lk[c - lo])
        s = 0.0
        for c in range(lo, hi):
            lk[c - lo] = np.exp(lk[c - lo] - m)
            s += lk[c - lo]
        total += w[r] * (m + np.log(s) + const)
        d_base = 0.0
        p = p_row
        for c in range(lo, hi):
            resp = w[r] * lk[c - lo] / s
            z = zk[c - lo]
            d_eta = resp * z * inv
            d_base += d_eta
            dsigma += resp * z * z * inv
            _scatter(r, p, n, g, d_eta, dbeta, attribute, gap, A)
            p += n
        p_row = p
        dsigma -= w[r] * inv
        for k in range(x.shape[1]):
            dbeta[g, k] += d_base * x[r, k]
    return total, dbeta, dsigma


@numba.njit(cache=True, inline="always")
def _expit(v):
    if v >= 0:
        return 1.0 / (1.0 + np.exp(-v))
    e = np.exp(v)
    return e / (1.0 + e)


@numba.njit(cache=True)
def _ordinal(beta, bounds, x, y, w, segment, attribute, n_affected, offsets, gap, logp):
    R = y.shape[0]
    A = (x.shape[1] - 1) // 2
    dbeta = np.zeros(beta.shape)
    dbounds = np.zeros(bounds.shape)
    total = 0.0
    kmax = 1
    for r in range(R):
        kmax = max(kmax, offsets[r + 1] - offsets[r])
    lk = np.empty(kmax)
    da = np.empty(kmax)  # d log p / d high
    db = np.empty(kmax)  # d log p / d low
    p_row = 0
    for r in range(R):
        g = segment[r]
        base = _base_eta(r, beta, x, g)
        n = n_affected[r]
        yi = int(y[r])
        low, high = bounds[yi], bounds[yi + 1]
        lo, hi = offsets[r], offsets[r + 1]
        m = -np.inf
        p = p_row
        for c in range(lo, hi):
            eta = _combo_eta(r, p, n, g, base, beta, attribute, gap, A)
            p += n
            a, b = high - eta, low - eta
            if b > 0.0:  # both in the upper tail: 1 - F(b) - (1 - F(a)), no cancellation
                prob = _expit(-b) - _expit(-a)
            else:
                prob = _expit(a) - _expit(b)
            prob = max(prob, 1e-300)
            lk[c - lo] = logp[c] + np.log(prob)
            da[c - lo] = _expit(a) * _expit(-a) / prob
            db[c - lo] = -_expit(b) * _expit(-b) / prob
            m = max(m, lk[c - lo])
        s = 0.0
        for c in range(lo, hi):
            lk[c - lo] = np.exp(lk[c - lo] - m)
            s += lk[c - lo]
        total += w[r] * (m + np.log(s))
        d_base = 0.0
        p = p_row
        for c in range(lo, hi):
            resp = w[r] * lk[c - lo] / s
            # eta enters as high - eta and low - eta
            d_eta = -resp * (da[c - lo] + db[c - lo])
            d_base += d_eta
            dbounds[yi + 1] += resp * da[c - lo]
            dbounds[yi] += resp * db[c - lo]
            _scatter(r, p, n, g, d_eta, dbeta, attribute, gap, A)
            p += n
        p_row = p
        for k in range(x.shape[1]):
            dbeta[g, k] += d_base * x[r, k]
    return total, dbeta, dbounds


_KERNELS = {"normal": _normal, "ordinal": _ordinal}


def mixture_loglik_numpy(rows: MixtureRows, beta: np.ndarray, scale, family: str):
    """The weighted log likelihood and its gradients (for checks): ``(value, dbeta, dscale)``.

    ``scale`` is the residual standard deviation (normal) or the answer bounds
    ``[-1e3, cutpoints..., 1e3]`` (ordinal).
    """
    k = _KERNELS[family]
    return k(
        np.ascontiguousarray(beta, dtype=float),
        float(scale) if family == "normal" else np.ascontiguousarray(scale, dtype=float),
        rows.x,
        rows.y,
        rows.w,
        rows.segment,
        rows.attribute,
        rows.n_affected,
        rows.offsets,
        rows.gap,
        rows.logp,
    )


# ---------------------------------------------------------------------------- the Op
class MixtureLoglik(Op):
    """An Op ``(beta, scale) -> [loglik, dbeta, dscale]``: use the first output.

    Parameters
    ----------
    rows : MixtureRows
        The rows and their combinations.
    family : {"normal", "ordinal"}
        ``scale`` is the residual sd (normal) or the answer bounds ``[-1e3, cutpoints,
        1e3]`` (ordinal).

    Notes
    -----
    The gradient outputs come from the same pass; :meth:`grad` reuses them (PyTensor
    merges the repeated node), so value and gradient cost one kernel call.
    """

    __props__ = ("family", "key")

    def __init__(self, rows: MixtureRows, family: str):
        self.rows = rows
        self.family = family
        # identity for PyTensor's merging: the data, not the Python object
        self.key = hash(
            (
                family,
                rows.x.tobytes(),
                rows.y.tobytes(),
                rows.w.tobytes(),
                rows.logp.tobytes(),
                rows.offsets.tobytes(),
            )
        )

    def make_node(self, beta, scale):
        """Inputs: coefficients ``(G, 1 + 2A)`` and the scale (sd or answer bounds)."""
        beta = pt.as_tensor_variable(beta).astype("float64")
        scale = pt.as_tensor_variable(scale).astype("float64")
        outputs = [pt.dscalar(), pt.dmatrix(), scale.type()]
        return Apply(self, [beta, scale], outputs)

    def perform(self, node, inputs, output_storage):
        """Run the kernel."""
        beta, scale = inputs
        value, dbeta, dscale = mixture_loglik_numpy(self.rows, beta, scale, self.family)
        output_storage[0][0] = np.asarray(value, dtype=float)
        output_storage[1][0] = dbeta
        output_storage[2][0] = np.asarray(dscale, dtype=float).reshape(np.shape(scale))

    def grad(self, inputs, output_grads):
        """Gradient of the log likelihood (the first output) from the kernel's own."""
        _, dbeta, dscale = self(*inputs)
        g = output_grads[0]
        return [g * dbeta, g * dscale]
