"""Fitting the paper's shape to module time per event against the number of clients.

Primary fit (segmented least squares): y = m0 + s * max(0, N - N_sat), flat then linear,
all three free, on the median module time of each user level (every level counts the
same, however many events it holds) with relative errors (module times span two orders
of magnitude between 1 and 400 clients); N_sat from a fine search, (m0, s) in closed form
for each candidate. The interval on N_sat is a bootstrap over events (resampled within
each user level).

Second opinion (robust, paper-constrained): Eq. 5 says that past saturation the event
time is s * N, so module = max(m0, s * N - t_other); fitted to per-level medians by
least absolute deviations, its knee is N_sat = (m0 + t_other) / s. When the two knees
disagree by more than 25%, the analysis warns.

A run whose segmented fit does not beat a flat line (F-test, 1%), or whose knee lies
beyond the last level, is "not saturated": N_sat is then only bounded from below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

BOOTSTRAP = 200
DISAGREEMENT = 0.25
SIGNIFICANCE = 0.01


@dataclass(frozen=True)
class SegmentedFit:
    n_sat: float
    flat: float  # m0, s
    slope: float  # s per added client
    sse: float


@dataclass(frozen=True)
class SaturationResult:
    saturated: bool
    n_sat: float | None
    n_sat_low: float
    n_sat_high: float | None
    flat_module_s: float
    slope_s_per_client: float | None
    robust_n_sat: float | None
    consistency: float | None  # slope x N_sat / (flat module + other work): 1 = consistent
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _fits(n: np.ndarray, y: np.ndarray, w: np.ndarray, knees: np.ndarray):
    """Weighted least squares of y = m0 + s max(0, n - k) for every knee k at once."""
    x = np.maximum(0.0, n[None, :] - knees[:, None])
    total, sum_y, sum_yy = w.sum(), w @ y, w @ (y * y)
    sum_x, sum_xx, sum_xy = x @ w, (x * x) @ w, x @ (w * y)
    denominator = total * sum_xx - sum_x**2
    valid = denominator > 1e-12 * max(total * sum_xx.max(), 1e-300)
    safe = np.where(valid, denominator, 1.0)
    slope = np.where(valid, (total * sum_xy - sum_x * sum_y) / safe, 0.0)
    flat = (sum_y - slope * sum_x) / total
    sse = np.maximum(sum_yy - flat * sum_y - slope * sum_xy, 0.0)
    return flat, slope, sse


def _level_medians(n: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    levels = np.unique(n)
    return levels, np.array([np.median(y[n == level]) for level in levels])


def fit_segmented(levels: np.ndarray, medians: np.ndarray) -> SegmentedFit:
    """Knee of flat-then-linear through per-level medians, relative errors."""
    w = 1.0 / np.maximum(medians, 1e-12) ** 2
    low, high = float(levels.min()), float(levels.max())
    grid = np.unique(np.concatenate([np.geomspace(max(low, 1e-3), high, 400), levels]))
    sse = _fits(levels, medians, w, grid)[2]
    i = int(np.argmin(sse))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    best = float(grid[i])
    if hi > lo:  # refine between the neighbouring grid points
        found = optimize.minimize_scalar(
            lambda k: float(_fits(levels, medians, w, np.array([k]))[2][0]),
            bounds=(lo, hi),
            method="bounded",
        )
        if found.fun <= sse[i]:
            best = float(found.x)
    flat, slope, error = (float(v[0]) for v in _fits(levels, medians, w, np.array([best])))
    return SegmentedFit(best, flat, slope, error)


def _beats_flat(levels: np.ndarray, medians: np.ndarray, fit: SegmentedFit) -> bool:
    w = 1.0 / np.maximum(medians, 1e-12) ** 2
    flat_sse = float(w @ medians**2 - (w @ medians) ** 2 / w.sum())
    dof = len(medians) - 3
    if dof <= 0 or fit.sse <= 0:
        return fit.sse < flat_sse
    f_stat = ((flat_sse - fit.sse) / 2) / (fit.sse / dof)
    return stats.f.sf(f_stat, 2, dof) < SIGNIFICANCE


def fit_robust(levels: np.ndarray, medians: np.ndarray, t_other: float) -> float | None:
    """Knee of module = max(m0, s N - t_other), least relative deviations on level medians."""

    def loss(params: np.ndarray) -> float:
        m0, s = params
        return float((np.abs(medians - np.maximum(m0, s * levels - t_other)) / medians).sum())

    start = np.array([medians[0], (medians[-1] + t_other) / levels[-1]])
    found = optimize.minimize(loss, start, method="Nelder-Mead", options={"xatol": 1e-6})
    m0, s = found.x
    if s <= 0:
        return None
    return float((m0 + t_other) / s)


def _bootstrap(n: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    levels = np.unique(n)
    groups = [y[n == level] for level in levels]
    knees = []
    for _ in range(BOOTSTRAP):
        medians = np.array([np.median(rng.choice(g, size=len(g))) for g in groups])
        knees.append(fit_segmented(levels, medians).n_sat)
    return np.array(knees)


def analyse_saturation(
    users: np.ndarray, module_s: np.ndarray, other_s: float, seed: int = 0
) -> SaturationResult:
    """`users` and `module_s` per event; `other_s` the mean non-module time per event."""
    n, y = np.asarray(users, float), np.asarray(module_s, float)
    levels, medians = _level_medians(n, y)
    if len(levels) < 4:
        raise ValueError("at least four user levels are needed to fit a knee")
    fit = fit_segmented(levels, medians)
    robust = fit_robust(levels, medians, other_s)
    top = float(levels.max())
    saturated = _beats_flat(levels, medians, fit) and fit.slope > 0 and fit.n_sat < top
    warnings: list[str] = []
    if not saturated:
        flat = float(np.median(y))
        return SaturationResult(False, None, top, None, flat, None, robust, None, ())
    knees = _bootstrap(n, y, seed)
    low, high = (float(v) for v in np.percentile(knees, [2.5, 97.5]))
    consistency = fit.slope * fit.n_sat / (fit.flat + other_s)
    if robust is not None and abs(robust - fit.n_sat) > DISAGREEMENT * fit.n_sat:
        warnings.append(
            f"the segmented fit's knee ({fit.n_sat:.0f}) and the paper-constrained robust "
            f"fit's ({robust:.0f}) disagree by more than {DISAGREEMENT:.0%}"
        )
    return SaturationResult(
        True, fit.n_sat, low, high, fit.flat, fit.slope, robust, consistency, tuple(warnings)
    )
