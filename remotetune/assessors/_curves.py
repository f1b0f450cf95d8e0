"""Learning-curve extrapolation: a weighted ensemble of curve models, sampled by MCMC.

The method of Domhan, Springenberg and Hutter ("Speeding up automatic hyperparameter
optimization of deep neural networks by extrapolation of learning curves", IJCAI 2015), which
NNI's Curvefitting follows; the code is this project's own, numpy only.

* **Models.** Every model here is affine in one basis curve: ``f(x) = a + b * g(x; theta)``
  with ``theta`` (0-2 numbers, all positive) shaping ``g``: pow3 (``x ** -alpha``), exp3
  (``exp(-k x)``), logx-linear (``log x``), ilog2 (``1 / log(x + 1)``), MMF
  (``1 / (1 + (kappa x) ** delta)``) and Weibull (``exp(-(kappa x) ** delta)``).
* **Start.** The curve is put on a unit scale (its minimum 0, its range 1). Each model is
  fitted by least squares: ``a`` and ``b`` in closed form for every ``theta`` of a grid, then
  of ``_ZOOMS`` finer grids around the best point. A model joins the ensemble when its fit
  beats the curve's mean and the prior allows its curve: it ends (at the target step) higher
  than it starts, and at most at 1 when every value lies in [0, 1] (an accuracy; Domhan's
  bound), else within ``_PLAUSIBLE`` ranges. The weights start at each fit's likelihood
  relative to the best fit's.
* **Sampling.** Random-walk Metropolis-Hastings with ``CHAINS`` chains side by side (numpy
  arrays). Each sweep visits every model in turn: a proposal for its ``(a, b, log theta)``,
  accepted by that model's own fit, then one for its log-weight, accepted by the weighted
  ensemble's fit. A fit's likelihood is Gaussian with the variance integrated out (Jeffreys
  prior: ``SSE ** (-n / 2)``); the weights are ``softmax(log w)`` with a N(0, 3^2) prior on
  ``log w``; ``log theta`` stays in the grid's box. Judging each model's parameters by its
  own fit (NNI keeps them at the least-squares fit and samples the weights only) keeps two
  poor models from cancelling each other's errors inside the mix.
* **Prediction.** The mean, over the chains and the second half of the sweeps, of the
  ensemble at the target step, back on the curve's own scale; its spread is ``sd``.

The work is fixed (``CHAINS`` x ``SWEEPS`` x models x 2 proposals: 9-10 ms of CPU on this
project's 2-vCPU machine), and the random numbers come from ``seed``: the same curve and seed
always give the same prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

CHAINS = 8
SWEEPS = 24  # each sweep proposes a new block for every model, in turn; half are burn-in
_STEP_LIN = 0.02  # random-walk step of a and b (unit scale)
_STEP_LOG = 0.05  # ... of log theta
_STEP_W = 0.15  # ... of log w
_LOG_W_SD = 3.0
_ZOOMS = 3  # finer grids after the first, in the least-squares start
_PLAUSIBLE = 10.0  # |unit-scale prediction| above this is no learning curve


@dataclass(frozen=True)
class CurveModel:
    """``f(x) = a + b * basis(x, theta)``; ``grid`` is the start grid of ``log theta``."""

    name: str
    basis: Callable[[Any, Any], Any]  # (x: (..., n), theta: (..., p)) -> (..., n)
    grid: Any  # (G, p) log theta, p may be 0
    low: Any  # (p,) box of log theta
    high: Any


@dataclass(frozen=True)
class Prediction:
    mean: float  # on the curve's own scale
    sd: float  # spread of the sampled predictions
    models: tuple[str, ...]  # the models in the ensemble


def _grid(*axes: Any) -> Any:
    import numpy as np

    if not axes:
        return np.zeros((1, 0))
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def _pow3(x: Any, t: Any) -> Any:
    import numpy as np

    return np.power(x, -np.exp(t[..., 0:1]))


def _exp3(x: Any, t: Any) -> Any:
    import numpy as np

    return np.exp(-np.exp(t[..., 0:1]) * x)


def _logx(x: Any, t: Any) -> Any:
    import numpy as np

    return np.broadcast_to(np.log(x), np.broadcast_shapes(x.shape, t.shape[:-1] + (1,)))


def _ilog2(x: Any, t: Any) -> Any:
    import numpy as np

    return np.broadcast_to(1.0 / np.log(x + 1.0), np.broadcast_shapes(x.shape,
                                                                       t.shape[:-1] + (1,)))


def _mmf(x: Any, t: Any) -> Any:
    import numpy as np

    return 1.0 / (1.0 + np.power(np.exp(t[..., 0:1]) * x, np.exp(t[..., 1:2])))


def _weibull(x: Any, t: Any) -> Any:
    import numpy as np

    return np.exp(-np.power(np.exp(t[..., 0:1]) * x, np.exp(t[..., 1:2])))


def models() -> tuple[CurveModel, ...]:
    import numpy as np

    rate = np.linspace(math.log(1e-3), math.log(3.0), 24)
    power = np.linspace(math.log(0.02), math.log(3.0), 24)
    kappa = np.linspace(math.log(1e-3), math.log(3.0), 14)
    delta = np.linspace(math.log(0.3), math.log(4.0), 8)
    box1 = (np.array([-9.0]), np.array([2.0]))
    box2 = (np.array([-9.0, -2.0]), np.array([2.0, 2.0]))
    none = (np.zeros(0), np.zeros(0))
    return (
        CurveModel("pow3", _pow3, _grid(power), *box1),
        CurveModel("exp3", _exp3, _grid(rate), *box1),
        CurveModel("logx_linear", _logx, _grid(), *none),
        CurveModel("ilog2", _ilog2, _grid(), *none),
        CurveModel("mmf", _mmf, _grid(kappa, delta), *box2),
        CurveModel("weibull", _weibull, _grid(kappa, delta), *box2),
    )


@dataclass(frozen=True)
class _Fit:
    model: CurveModel
    lin: Any  # (2,) a, b
    theta: Any  # (p,)


def _linear_fits(model: CurveModel, x: Any, y: Any, grid: Any) -> tuple[Any, Any, Any]:
    """For every row of ``grid`` (log theta): a and b by least squares, and the residual sum
    of squares (inf where the basis is degenerate)."""
    import numpy as np

    g = model.basis(x[None, :], grid)  # (G, n)
    gm = g.mean(axis=1, keepdims=True)
    gc = g - gm
    var = (gc * gc).sum(axis=1)
    b = (gc * (y - y.mean())[None, :]).sum(axis=1) / var
    a = y.mean() - b * gm[:, 0]
    sse = ((a[:, None] + b[:, None] * g - y[None, :]) ** 2).sum(axis=1)
    return a, b, np.where(np.isfinite(sse) & (var > 1e-12), sse, np.inf)


def _least_squares(model: CurveModel, x: Any, y: Any) -> tuple[_Fit, float] | None:
    """The best point of the model's grid, then of ``_ZOOMS`` finer grids around it (each a
    third the spacing); None when nothing fits."""
    import numpy as np

    grid = model.grid
    spacing = (model.high - model.low) / 12.0
    offsets = _grid(*([np.linspace(-1.0, 1.0, 7)] * grid.shape[1]))
    for zoom in range(_ZOOMS + 1 if grid.shape[1] else 1):
        a, b, sse = _linear_fits(model, x, y, grid)
        best = int(np.argmin(sse))
        if not np.isfinite(sse[best]):
            return None
        centre = grid[best]
        spacing = spacing / 3.0 if zoom else spacing
        grid = np.clip(centre + offsets * spacing, model.low, model.high)
    return _Fit(model, np.array([a[best], b[best]]), centre.copy()), float(sse[best])


def _start(x: Any, y: Any, at: float, cap: float) -> tuple[list[_Fit], list[float]]:
    """The models whose least-squares fit beats the mean and whose curve the prior allows
    (it ends higher than it starts, at most at ``cap``), with their sums of squared
    residuals."""
    import numpy as np

    base = float(((y - y.mean()) ** 2).sum())
    fits, sses = [], []
    for model in models():
        found = _least_squares(model, x, y)
        if found is None:
            continue
        fit, sse = found
        with np.errstate(all="ignore"):
            ends = fit.lin[0] + fit.lin[1] * model.basis(np.array([1.0, at]), fit.theta[None, :])
        first, value = (float(v) for v in ends.ravel())
        if sse < base and math.isfinite(value) and first <= value <= cap:
            fits.append(fit)
            sses.append(sse)
    return fits, sses


class _Chains:
    """The MCMC state of every chain: each model's ``(a, b, log theta)`` and the ensemble's
    log-weights."""

    def __init__(self, fits: list[_Fit], logw: Any, x: Any, y: Any, at: float, cap: float,
                 rng: Any) -> None:
        import numpy as np

        self.fits, self.y, self.cap, self.rng = fits, y, cap, rng
        self.xs = np.append(x, at)[None, :]  # the observed steps, then the target
        self.n = len(y)
        self.blocks = [np.tile(np.concatenate([f.lin, f.theta]), (CHAINS, 1)) for f in fits]
        self.scales = [np.array([_STEP_LIN, _STEP_LIN] + [_STEP_LOG] * len(f.theta))
                       for f in fits]
        self.curves = np.stack([self._curve(k, b) for k, b in enumerate(self.blocks)],
                               axis=1)  # (C, K, n + 1)
        self.own = np.stack([self._own(k, self.curves[:, k], b)
                             for k, b in enumerate(self.blocks)], axis=1)  # (C, K)
        self.logw = np.tile(logw, (CHAINS, 1))  # (C, K)

    def _curve(self, k: int, block: Any) -> Any:
        g = self.fits[k].model.basis(self.xs, block[:, 2:])
        return block[:, 0:1] + block[:, 1:2] * g

    def _own(self, k: int, curve: Any, block: Any) -> Any:
        """Model ``k``'s log posterior on its own: its fit to the curve (Gaussian noise, the
        variance integrated out), -inf where the prior forbids the curve or ``theta``."""
        import numpy as np

        resid = curve[:, :-1] - self.y
        logp = -0.5 * self.n * np.log(np.einsum("cn,cn->c", resid, resid) + 1e-12)
        end = curve[:, -1]
        ok = np.isfinite(logp) & (end >= curve[:, 0]) & (end <= self.cap) & (end >= -_PLAUSIBLE)
        model = self.fits[k].model
        if model.low.size:
            theta = block[:, 2:]
            ok &= ((theta >= model.low) & (theta <= model.high)).all(axis=1)
        return np.where(ok, logp, -np.inf)

    def _combined(self, logw: Any) -> tuple[Any, Any]:
        """The ensemble's log posterior given the weights ``softmax(logw)`` (``(..., C, K)``:
        several sets at once), and its curve (``(..., C, n + 1)``)."""
        import numpy as np

        w = np.exp(logw - logw.max(axis=-1, keepdims=True))
        comb = np.einsum("...ck,ckn->...cn", w, self.curves) / w.sum(axis=-1)[..., None]
        resid = comb[..., :-1] - self.y
        logp = -0.5 * self.n * np.log((resid * resid).sum(axis=-1) + 1e-12) \
            - 0.5 / _LOG_W_SD ** 2 * (logw * logw).sum(axis=-1)
        return np.where(np.isfinite(logp), logp, -np.inf), comb

    def step(self, k: int) -> None:
        """Metropolis-Hastings in every chain: a proposal for model ``k``'s parameters, judged
        by the model's own fit, then one for its weight, judged by the ensemble's."""
        import numpy as np

        rng, old = self.rng, self.blocks[k]
        block = old + rng.standard_normal(old.shape) * self.scales[k]
        curve = self._curve(k, block)
        own = self._own(k, curve, block)
        take = np.log(rng.random(CHAINS)) < own - self.own[:, k]
        self.blocks[k] = np.where(take[:, None], block, old)
        self.curves[:, k] = np.where(take[:, None], curve, self.curves[:, k])
        self.own[:, k] = np.where(take, own, self.own[:, k])
        both = np.stack([self.logw, self.logw])  # now, and proposed
        both[1, :, k] += rng.normal(0.0, _STEP_W, CHAINS)
        (now, new), _ = self._combined(both)
        take = np.log(rng.random(CHAINS)) < new - now
        self.logw = np.where(take[:, None], both[1], self.logw)

    def predictions(self) -> Any:
        """Each chain's ensemble curve at the target step (unit scale)."""
        return self._combined(self.logw)[1][:, -1]


def predict(values: Sequence[float], at: int, seed: int = 0) -> Prediction | None:
    """The ensemble's prediction of the curve at step ``at`` (steps are 1-based), or None
    when fewer than 3 points, or no model fits."""
    import numpy as np

    y = np.asarray(values, dtype=float)
    if len(y) < 3 or not np.all(np.isfinite(y)):
        return None
    x = np.arange(1, len(y) + 1, dtype=float)
    lo, span = float(y.min()), float(y.max() - y.min())
    if span <= 0.0:
        return Prediction(lo, 0.0, ())  # flat: it stays where it is
    yn = (y - lo) / span
    # an accuracy-like curve (every value in [0, 1]) cannot end above 1 (Domhan's prior)
    cap = min(_PLAUSIBLE, (1.0 - lo) / span) if lo >= 0.0 and y.max() <= 1.0 else _PLAUSIBLE
    with np.errstate(all="ignore"):
        fits, sses = _start(x, yn, float(at), cap)
        if not fits:
            return None
        # each model's weight starts at its fit's likelihood relative to the best fit's
        logw = np.clip(-0.5 * len(y) * np.log(np.maximum(sses, 1e-12) / max(min(sses), 1e-12)),
                       -8.0, 0.0)
        chains = _Chains(fits, logw, x, yn, float(at), cap, np.random.default_rng(seed))
        kept = []
        for sweep in range(SWEEPS):
            for k in range(len(fits)):
                chains.step(k)
            if sweep >= SWEEPS // 2:
                kept.append(chains.predictions())
    sampled = np.concatenate(kept)
    if sampled.size == 0:
        return None
    return Prediction(lo + span * float(sampled.mean()), span * float(sampled.std()),
                      tuple(f.model.name for f in fits))
