"""The continuous SEM likelihood, with the latent variables integrated out.

Items are multivariate normal with the model-implied mean and covariance; the
log-likelihood of all respondents with one missingness pattern depends on the data only
through their weighted moments, so a gradient costs the same for 300 or 3,000,000
respondents. Many patterns are evaluated from one Cholesky per group and a small
compiled kernel per pattern (:class:`GaussianPatternLogLik`). The derivation is in
``docs/design/sem-likelihood.md``.
"""

from __future__ import annotations

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

__all__ = ["GaussianPatternLogLik", "implied_moments", "nilpotent_inverse", "pattern_loglik"]

LOG2PI = float(np.log(2 * np.pi))


def nilpotent_inverse(B, depth: int):
    """``(I - B)^-1`` for a nilpotent (recursive) ``B``, batched over the leading axis."""
    m = B.shape[-1]
    eye = pt.eye(m)
    out = eye + B if depth >= 1 else pt.broadcast_to(eye, B.shape)
    term = B
    for _ in range(1, depth):
        term = pt.matmul(term, B)
        out = out + term
    return out


def implied_moments(Lambda, B, Psi, Theta, nu, alpha, depth: int):
    """Model-implied item means and covariances, batched over groups.

    Parameters
    ----------
    Lambda : tensor ``(G, p, m)``
    B : tensor ``(G, m, m)``
    Psi : tensor ``(G, m, m)``
    Theta : tensor ``(p, p)`` or ``(G, p, p)``
    nu : tensor ``(p,)`` or ``(G, p)``
    alpha : tensor ``(G, m)``
    depth : int
        Length of the longest chain of regressions (``B^(depth+1) = 0``).

    Returns
    -------
    mu : tensor ``(G, p)``
    sigma : tensor ``(G, p, p)``
    """
    inv = nilpotent_inverse(B, depth)
    cov_eta = pt.matmul(pt.matmul(inv, Psi), pt.swapaxes(inv, -1, -2))
    lam_t = pt.swapaxes(Lambda, -1, -2)
    sigma = pt.matmul(pt.matmul(Lambda, cov_eta), lam_t) + Theta
    mean_eta = pt.matmul(inv, alpha[..., None])[..., 0]
    mu = nu + pt.matmul(Lambda, mean_eta[..., None])[..., 0]
    return mu, sigma


@numba.njit(
    cache=True,
    nogil=True,
    fastmath={"reassoc", "contract", "arcp", "nsz"},
    error_model="numpy",
)
def _pattern_corrections(P, mu, group, w, miss_ptr, miss_idx, obs, mean, row_ptr, rows):
    """Per-pattern Schur corrections of the value and of ``sum_k W_k M_k`` (numba).

    For each incomplete pattern ``k`` (missing ``m``, ``A = P[m, m]``) and each of its
    rows ``f`` (covariance factor rows, then the mean deviation ``d = (m_k - mu) * o``):
    ``g = P[m, :] f``, ``h = A^-1 g``. Returns ``sum_k W_k (log|A| - sum_f g'h)``, the
    symmetric matrix ``sum_k W_k [E_mm(A^-1) + sum_f (E_m h)(E_m h)' - (E_m h) f' -
    f (E_m h)']`` per group (its sandwich ``P . P`` is the gradient correction) and
    ``sum_k W_k E_m h_d`` per group (the mean gradient correction), and False when some
    ``A`` is not positive definite.

    Per pattern, the rows ``P[m, :]`` are copied into a small contiguous buffer, ``A^-1``
    comes from the inverse of its Cholesky factor (``L^-T L^-1``), and the pattern's
    contributions are summed in local buffers before one scatter into ``corr`` and
    ``cross``; with reassociation allowed (no ``nnan``/``ninf`` assumptions, so the
    positive-definiteness test still sees a NaN) this is 1.7x faster than one update
    per row (0.58 vs 0.98 ms for the sample study's 825 incomplete patterns).
    """
    G, p, _ = P.shape
    corr = np.zeros((G, p, p))
    cross = np.zeros((G, p, p))
    dev = np.zeros((G, p))
    value = 0.0
    rmax = 1
    for k in range(group.size):
        rmax = max(rmax, miss_ptr[k + 1] - miss_ptr[k])
    L = np.zeros((rmax, rmax))
    Li = np.zeros((rmax, rmax))
    Ai = np.zeros((rmax, rmax))
    Pm = np.zeros((rmax, p))
    Cm = np.zeros((rmax, p))
    Hm = np.zeros((rmax, rmax))
    gv = np.zeros(rmax)
    h = np.zeros(rmax)
    fd = np.zeros(p)
    for k in range(group.size):
        g = group[k]
        W = w[k]
        m = miss_idx[miss_ptr[k] : miss_ptr[k + 1]]
        r = m.size
        for a in range(r):
            for i in range(p):
                Pm[a, i] = P[g, m[a], i]
                Cm[a, i] = 0.0
        logdet = 0.0
        for a in range(r):
            for b in range(a + 1):
                acc = Pm[a, m[b]]
                for c in range(b):
                    acc -= L[a, c] * L[b, c]
                if a == b:
                    if not acc > 0.0:
                        return -np.inf, corr, dev, False
                    L[a, a] = np.sqrt(acc)
                    logdet += np.log(acc)
                else:
                    L[a, b] = acc / L[b, b]
        # inverse of the Cholesky factor, then A^-1 = Li' Li
        for j in range(r):
            Li[j, j] = 1.0 / L[j, j]
            for a in range(j + 1, r):
                acc = 0.0
                for c in range(j, a):
                    acc -= L[a, c] * Li[c, j]
                Li[a, j] = acc / L[a, a]
        for a in range(r):
            for b in range(a + 1):
                acc = 0.0
                for c in range(a, r):
                    acc += Li[c, a] * Li[c, b]
                Ai[a, b] = acc
                Ai[b, a] = acc
        for a in range(r):
            for b in range(r):
                Hm[a, b] = W * Ai[a, b]
        quad = 0.0
        start = row_ptr[k]
        n_rows = row_ptr[k + 1] - start
        for jj in range(n_rows + 1):
            if jj < n_rows:
                f = rows[start + jj]
            else:
                for i in range(p):
                    fd[i] = (mean[k, i] - mu[g, i]) * obs[k, i]
                f = fd
            for a in range(r):
                acc = 0.0
                for i in range(p):
                    acc += Pm[a, i] * f[i]
                gv[a] = acc
            for a in range(r):
                acc = 0.0
                for b in range(r):
                    acc += Ai[a, b] * gv[b]
                h[a] = acc
                quad += gv[a] * acc
            for a in range(r):
                wh = W * h[a]
                for i in range(p):
                    Cm[a, i] += wh * f[i]
                for b in range(r):
                    Hm[a, b] += wh * h[b]
                if jj == n_rows:
                    dev[g, m[a]] += wh
        for a in range(r):
            for i in range(p):
                cross[g, m[a], i] += Cm[a, i]
            for b in range(r):
                corr[g, m[a], m[b]] += Hm[a, b]
        value += W * (logdet - quad)
    for g in range(G):
        for i in range(p):
            for j in range(p):
                corr[g, i, j] -= cross[g, i, j] + cross[g, j, i]
    return value, corr, dev, True


class GaussianPatternLogLik(Op):
    """Log-likelihood of pattern moments given group means and covariances, with gradients.

    One NumPy/numba call per evaluation. Outputs ``(loglik, d loglik / d mu,
    d loglik / d sigma)``; the gradient reuses the last two, so value and gradient cost
    one pass. Written as an Op (rather than a PyTensor graph of batched linear-algebra
    Ops, each a Python call in the C backend) because it is several times faster per
    gradient and compiles in milliseconds.

    Parameters
    ----------
    moments : dict
        ``pat_mask (P, p)``, ``pat_group (P,)``, ``pat_w (P,)``, ``pat_mean (P, p)``,
        ``pat_cov (P, p, p)``; means and covariances are zero where unobserved.
    """

    __props__ = ("key",)

    def __init__(self, moments: dict[str, np.ndarray]):
        self.mask = np.asarray(moments["pat_mask"], dtype=bool)
        self.group = np.asarray(moments["pat_group"], dtype=np.int64)
        self.w = np.asarray(moments["pat_w"], dtype=float)
        self.cov = np.asarray(moments["pat_cov"], dtype=float)
        self.mean = np.asarray(moments["pat_mean"], dtype=float)
        n_pat, p = self.mask.shape
        self.maskf = self.mask.astype(float)
        self.n_obs = self.maskf.sum(1)
        self.complete = bool(self.mask.all())
        self.const = -0.5 * float(np.sum(self.w * self.n_obs)) * LOG2PI
        n_groups = int(self.group.max()) + 1 if self.group.size else 1
        self.onehot = np.zeros((n_pat, n_groups))
        self.onehot[np.arange(n_pat), self.group] = 1.0
        self.identity_groups = n_pat == n_groups and bool(np.all(self.group == np.arange(n_pat)))
        self._aggregate()
        self._factor_incomplete()
        self.key = hash(
            (
                self.mask.tobytes(),
                self.w.tobytes(),
                self.mean.tobytes(),
                self.cov.tobytes(),
                self.group.tobytes(),
            )
        )

    def _aggregate(self) -> None:
        """Per group: ``sum_k W_k (S_k + m_k m_k')``, ``sum_k W_k m_k o_k'``, ``sum_k W_k o_k o_k'``.

        With ``d_k = m_k - o_k * mu``: ``sum_k W_k (S_k + d_k d_k') = A2 - Q mu' - mu Q'
        + C * mu mu'`` (``Q mu'`` meaning ``Q * mu[None, :]``), and ``sum_k W_k d_k =
        q - c * mu``.
        """
        oh, w, of = self.onehot, self.w, self.maskf
        wm = w[:, None] * self.mean
        self.W_group = oh.T @ w
        self.A2 = np.einsum("kg,kij->gij", oh, w[:, None, None] * self.cov) + np.einsum(
            "kg,ki,kj->gij", oh, wm, self.mean
        )
        self.Q = np.einsum("kg,ki,kj->gij", oh, wm, of)
        self.C = np.einsum("kg,ki,kj->gij", oh, w[:, None] * of, of)
        self.q = oh.T @ wm
        self.c = oh.T @ (w[:, None] * of)

    def _factor_incomplete(self, eig_tol: float = 1e-13) -> None:
        """Missing-item lists and covariance factor rows of the incomplete patterns."""
        inc = np.flatnonzero(~self.mask.all(1))
        self.n_incomplete = int(inc.size)
        p = self.mask.shape[1]
        if not inc.size:
            return
        # W_k S_k = W_k sum_j f_j f_j' from the eigen-decomposition (rank <= n_k - 1)
        lam, vec = np.linalg.eigh(self.cov[inc])
        tol = eig_tol * np.maximum(np.abs(lam).max(1, keepdims=True), 1e-300)
        kk, col = np.nonzero(lam > tol)
        rows = np.sqrt(lam[kk, col])[:, None] * vec[kk, :, col] * self.maskf[inc[kk]]
        self.inc_rows = np.ascontiguousarray(rows.reshape(-1, p))
        self.inc_row_ptr = np.searchsorted(kk, np.arange(inc.size + 1)).astype(np.int64)
        missing = ~self.mask[inc]
        self.inc_miss_ptr = np.concatenate([[0], np.cumsum(missing.sum(1))]).astype(np.int64)
        self.inc_miss_idx = np.ascontiguousarray(np.nonzero(missing)[1].astype(np.int64))
        self.inc_group = np.ascontiguousarray(self.group[inc])
        self.inc_w = np.ascontiguousarray(self.w[inc])
        self.inc_obs = np.ascontiguousarray(self.maskf[inc])
        self.inc_mean = np.ascontiguousarray(self.mean[inc])

    def make_node(self, mu, sigma):
        """Inputs: group means ``(G, p)`` and covariances ``(G, p, p)``."""
        mu = pt.as_tensor_variable(mu)
        sigma = pt.as_tensor_variable(sigma)
        return Apply(self, [mu, sigma], [pt.dscalar(), mu.type(), sigma.type()])

    def perform(self, node, inputs, outputs):
        """Evaluate value and gradients with NumPy."""
        mu, sigma = inputs
        value, gmu, gsig = self.evaluate(mu, sigma)
        outputs[0][0] = np.asarray(value)
        outputs[1][0] = gmu
        outputs[2][0] = gsig

    def evaluate(self, mu, sigma):
        """Value and gradients (``-inf`` and zeros when not positive definite).

        Always :meth:`evaluate_schur`, which is exact; :meth:`evaluate_direct` is the
        one-Cholesky-per-pattern reference.
        """
        return self.evaluate_schur(mu, sigma)

    def evaluate_schur(self, mu, sigma):
        """Value and gradients from one inverse per group plus per-pattern corrections.

        See the module docstring for the algebra. Costs ``O(G p^3)`` plus
        ``O(sum_k (r_k^3 + (rank_k + 1) r_k p))`` in the compiled kernel.
        """
        mu = np.ascontiguousarray(mu, dtype=float)
        fail = (-np.inf, np.zeros_like(mu), np.zeros_like(sigma))
        try:
            L = np.linalg.cholesky(sigma)
        except np.linalg.LinAlgError:
            return fail
        logdet = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)
        if not np.all(np.isfinite(logdet)):
            return fail
        Li = np.linalg.inv(L)
        P = np.ascontiguousarray(np.swapaxes(Li, -1, -2) @ Li)
        Qmu = self.Q * mu[:, None, :]
        M = self.A2 - Qmu - np.swapaxes(Qmu, -1, -2) + self.C * (mu[:, :, None] * mu[:, None, :])
        dev_sum = self.q - self.c * mu
        value = self.const - 0.5 * float(self.W_group @ logdet + np.sum(P * M))
        if self.n_incomplete:
            corr_value, corr, corr_mean, ok = _pattern_corrections(
                P,
                mu,
                self.inc_group,
                self.inc_w,
                self.inc_miss_ptr,
                self.inc_miss_idx,
                self.inc_obs,
                self.inc_mean,
                self.inc_row_ptr,
                self.inc_rows,
            )
            if not ok:
                return fail
            value -= 0.5 * corr_value
            M += corr
            dev_sum -= corr_mean
        gsig = -0.5 * self.W_group[:, None, None] * P + 0.5 * P @ M @ P
        gmu = (P @ dev_sum[:, :, None])[..., 0]
        return value, gmu, gsig

    def evaluate_direct(self, mu, sigma):
        """Value and gradients, one Cholesky per pattern (reference implementation)."""
        if self.identity_groups:
            sig, m = sigma, mu
        else:
            sig = sigma[self.group]
            m = mu[self.group]
        if not self.complete:
            mask2 = self.maskf[:, :, None] * self.maskf[:, None, :]
            pad = np.eye(self.mask.shape[1])[None] * (1.0 - self.maskf)[:, :, None]
            sig = sig * mask2 + pad
            m = m * self.maskf
        try:
            L = np.linalg.cholesky(sig)
        except np.linalg.LinAlgError:
            return -np.inf, np.zeros_like(mu), np.zeros_like(sigma)
        if not np.all(np.isfinite(L)):
            return -np.inf, np.zeros_like(mu), np.zeros_like(sigma)
        inv = np.linalg.inv(sig)
        logdet = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)
        dev = self.mean - m
        moment = self.cov + dev[:, :, None] * dev[:, None, :]
        quad = np.sum(inv * moment, axis=(-2, -1))
        value = self.const - 0.5 * float(np.sum(self.w * (logdet + quad)))
        a = inv @ dev[..., None]
        g_mu_b = self.w[:, None] * a[..., 0]
        g_sig_b = -0.5 * self.w[:, None, None] * (inv - inv @ moment @ inv)
        if not self.complete:
            g_mu_b = g_mu_b * self.maskf
            g_sig_b = g_sig_b * mask2
        if self.identity_groups:
            return value, g_mu_b, g_sig_b
        if self.onehot.shape[1] == 1:
            return value, g_mu_b.sum(0, keepdims=True), g_sig_b.sum(0, keepdims=True)
        gmu = self.onehot.T @ g_mu_b
        gsig = np.tensordot(self.onehot.T, g_sig_b, axes=1)
        return value, gmu, gsig

    def L_op(self, inputs, outputs, output_grads):
        """Gradients of the value output, reusing the computed gradient outputs."""
        g = output_grads[0]
        return [g * outputs[1], g * outputs[2]]


def pattern_loglik(mu, sigma, moments: dict[str, np.ndarray]):
    """Gaussian log-likelihood of the pattern moments.

    Parameters
    ----------
    mu : tensor ``(G, p)``
    sigma : tensor ``(G, p, p)``
    moments : dict
        ``pat_mask (P, p)``, ``pat_group (P,)``, ``pat_w (P,)``, ``pat_mean (P, p)``,
        ``pat_cov (P, p, p)`` (see :class:`cxlib.models.sem.data.SEMData`).

    Returns
    -------
    tensor
        The log-likelihood (``-inf`` where ``Sigma`` is not positive definite).
    """
    return GaussianPatternLogLik(moments)(mu, sigma)[0]
