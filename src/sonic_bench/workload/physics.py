"""What happens in 3 ms of a surface LArTPC, as energy deposits in space.

Cosmic muons (cos^2 zenith angle, MIP dE/dx with Landau fluctuations, delta rays), some
stopping with a Michel electron, EM showers from a branching cascade, and radiological
decays (39Ar, 85Kr, 222Rn, 42Ar/42K). Each deposit carries a truth label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sonic_bench.workload.detector import APA_WIDTH_M, DRIFT_LENGTH_M, HEIGHT_M, N_APA, N_TICKS

LABELS = ("none", "track", "em", "michel")
NONE, TRACK, EM, MICHEL = range(4)

STEP_CM = 0.3
MIP_MPV_MEV_PER_CM = 1.75
LANDAU_WIDTH = 0.09  # MeV/cm, Moyal scale at this step length
MUON_MASS_MEV = 105.7
MICHEL_ENDPOINT_MEV = 52.8
RADIATION_LENGTH_CM = 14.0
CRITICAL_ENERGY_MEV = 30.0

LENGTH_Z_M = APA_WIDTH_M * N_APA / 2
# Rates per full-scale event, tuned so that a full event lands near 55,000 hits.
MUONS_PER_EVENT = 57.0
STOPPING_FRACTION = 0.08
SHOWERS_PER_EVENT = 3.0
DELTA_RAYS_PER_CM = 0.04
# Decays in the 5.25 ms that can reach the 3 ms window (active mass ~410 t).
RADIOLOGICALS = {  # name: (decays per event, visible energy scale MeV)
    "39Ar": (2200.0, 0.22),
    "85Kr": (220.0, 0.25),
    "222Rn": (40.0, 1.2),  # 5.5 MeV alpha, quenched
    "42K": (15.0, 1.5),
}


@dataclass(frozen=True)
class Deposits:
    """Point deposits: position (m), time offset (ticks), energy (MeV), truth label."""

    xyz: np.ndarray  # (n, 3) float64
    t0_ticks: np.ndarray  # (n,) float64: arrival of the parent relative to the trigger
    energy_mev: np.ndarray  # (n,) float64
    label: np.ndarray  # (n,) uint8

    @staticmethod
    def concat(parts: list[Deposits]) -> Deposits:
        parts = [p for p in parts if len(p.energy_mev)]
        if not parts:
            return Deposits(np.zeros((0, 3)), np.zeros(0), np.zeros(0), np.zeros(0, np.uint8))
        return Deposits(
            np.concatenate([p.xyz for p in parts]),
            np.concatenate([p.t0_ticks for p in parts]),
            np.concatenate([p.energy_mev for p in parts]),
            np.concatenate([p.label for p in parts]),
        )


def _segment(start, direction, length_cm, t0, de_per_step, label) -> Deposits:
    n = max(round(length_cm / STEP_CM), 1)
    offsets = (np.arange(n) + 0.5) * (STEP_CM / 100.0)
    xyz = start[None, :] + offsets[:, None] * direction[None, :]
    energy = np.broadcast_to(np.asarray(de_per_step, dtype=float), (n,)).copy()
    return Deposits(xyz, np.full(n, t0), energy, np.full(n, label, np.uint8))


def _landau_steps(rng: np.random.Generator, n: int) -> np.ndarray:
    """dE per step: a Moyal (Landau-like) distribution, exp(-X) ~ chi2(1)."""
    z = rng.standard_normal(n)
    moyal = -np.log(np.maximum(z * z, 1e-12))
    de_dx = MIP_MPV_MEV_PER_CM + LANDAU_WIDTH * moyal
    return np.clip(de_dx, 0.8, 20.0) * STEP_CM


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _random_direction(rng: np.random.Generator) -> np.ndarray:
    return _unit(rng.standard_normal(3))


def _scatter(rng: np.random.Generator, direction: np.ndarray, sigma_rad: float) -> np.ndarray:
    return _unit(direction + rng.normal(0.0, sigma_rad, 3))


def _wiggly_electron(rng, start, direction, energy_mev, t0, label) -> Deposits:
    """An electron losing ~2.1 MeV/cm, scattering as it slows."""
    parts, position = [], start.copy()
    remaining = energy_mev
    while remaining > 0.1:
        length = min(1.0, remaining / 2.1)
        part = _segment(position, direction, length, t0, 2.1 * STEP_CM, label)
        parts.append(part)
        position = position + direction * (length / 100.0)
        remaining -= 2.1 * length
        direction = _scatter(rng, direction, 0.25)
    return Deposits.concat(parts)


def _michel_energy(rng: np.random.Generator) -> float:
    """Michel spectrum x^2 (3 - 2x), by rejection."""
    while True:
        x = rng.uniform()
        if rng.uniform() * 1.0 < x * x * (3 - 2 * x):
            return x * MICHEL_ENDPOINT_MEV


def cosmic_muon(rng: np.random.Generator, stopping: bool, t0: float) -> Deposits:
    """A muon entering through the top (or, if steep, a side), cos^2 zenith distribution."""
    cos_zenith = rng.uniform() ** (1.0 / 3.0)  # pdf ~ cos^2 on the upward hemisphere
    sin_zenith = np.sqrt(1 - cos_zenith**2)
    phi = rng.uniform(0, 2 * np.pi)
    direction = np.array([sin_zenith * np.cos(phi), -cos_zenith, sin_zenith * np.sin(phi)])
    start = np.array(
        [rng.uniform(-DRIFT_LENGTH_M, DRIFT_LENGTH_M), HEIGHT_M, rng.uniform(0, LENGTH_Z_M)]
    )
    length_cm = _path_in_box(start, direction) * 100.0
    if stopping:
        length_cm *= rng.uniform(0.2, 0.9)
    return muon(rng, start, direction, length_cm, t0, stopping)


def muon(rng, start, direction, length_cm: float, t0: float, stopping: bool) -> Deposits:
    """A muon track with delta rays; a stopping one ends in a Michel electron."""
    n = max(round(length_cm / STEP_CM), 1)
    track = _segment(start, direction, n * STEP_CM, t0, _landau_steps(rng, n), TRACK)
    parts = [track, *_delta_rays(rng, track, direction, t0)]
    if stopping:
        end = start + direction * (n * STEP_CM / 100.0)
        parts.append(
            _wiggly_electron(rng, end, _random_direction(rng), _michel_energy(rng), t0, MICHEL)
        )
    return Deposits.concat(parts)


def _delta_rays(rng, track: Deposits, direction: np.ndarray, t0: float) -> list[Deposits]:
    length_cm = len(track.energy_mev) * STEP_CM
    n = rng.poisson(DELTA_RAYS_PER_CM * length_cm)
    rays = []
    for i in rng.integers(0, len(track.energy_mev), n):
        energy = 2.0 / rng.uniform(0.1, 1.0)  # ~1/E^2 spectrum between 2 and 20 MeV
        ray_dir = _scatter(rng, direction, 1.0)
        rays.append(_wiggly_electron(rng, track.xyz[i], ray_dir, energy, t0, EM))
    return rays


def em_shower(rng: np.random.Generator, t0: float) -> Deposits:
    """A branching cascade: electrons deposit, photons fly unseen, below E_c it stops."""
    energy = float(np.exp(rng.uniform(np.log(100.0), np.log(1500.0))))
    start = np.array(
        [
            rng.uniform(-3.0, 3.0),
            rng.uniform(1.0, HEIGHT_M - 0.5),
            rng.uniform(0.5, LENGTH_Z_M - 0.5),
        ]
    )
    stack = [(start, _random_direction(rng), energy)]
    parts = []
    while stack:
        position, direction, e = stack.pop()
        if e < CRITICAL_ENERGY_MEV:
            parts.append(_wiggly_electron(rng, position, direction, e, t0, EM))
            continue
        step_cm = rng.exponential(RADIATION_LENGTH_CM * 0.7)
        deposited = min(2.1 * step_cm, 0.2 * e)
        parts.append(_segment(position, direction, step_cm, t0, 2.1 * STEP_CM, EM))
        end = position + direction * (step_cm / 100.0)
        share = rng.uniform(0.2, 0.8)
        for fraction in (share, 1 - share):
            daughter = _scatter(rng, direction, 0.15)
            gap_m = rng.exponential(RADIATION_LENGTH_CM * 9 / 7) / 100.0 * rng.integers(0, 2)
            stack.append((end + daughter * gap_m, daughter, fraction * (e - deposited)))
    return Deposits.concat(parts)


def radiologicals(rng: np.random.Generator, scale: float) -> Deposits:
    counts = {name: rng.poisson(rate * scale) for name, (rate, _) in RADIOLOGICALS.items()}
    total = sum(counts.values())
    xyz = np.column_stack(
        [
            rng.uniform(-DRIFT_LENGTH_M, DRIFT_LENGTH_M, total),
            rng.uniform(0, HEIGHT_M, total),
            rng.uniform(0, LENGTH_Z_M, total),
        ]
    )
    energy = np.concatenate(
        [rng.exponential(RADIOLOGICALS[name][1], n) for name, n in counts.items()]
    )
    t0 = rng.uniform(-N_TICKS * 0.75, N_TICKS, total)
    return Deposits(xyz, t0, energy, np.full(total, NONE, np.uint8))


def _path_in_box(start: np.ndarray, direction: np.ndarray) -> float:
    """Distance from `start` along `direction` to the active volume's boundary."""
    lows = np.array([-DRIFT_LENGTH_M, 0.0, 0.0])
    highs = np.array([DRIFT_LENGTH_M, HEIGHT_M, LENGTH_Z_M])
    with np.errstate(divide="ignore"):
        t_high = np.where(direction > 0, (highs - start) / direction, np.inf)
        t_low = np.where(direction < 0, (lows - start) / direction, np.inf)
    return float(np.min(np.minimum(t_high, t_low)))


def simulate_activity(rng: np.random.Generator, scale: float = 1.0) -> Deposits:
    """All deposits of one readout window; `scale` shrinks every rate proportionally."""
    parts = []
    for _ in range(rng.poisson(MUONS_PER_EVENT * scale)):
        t0 = rng.uniform(-N_TICKS * 0.75, N_TICKS * 0.9)
        parts.append(cosmic_muon(rng, rng.uniform() < STOPPING_FRACTION, t0))
    for _ in range(rng.poisson(SHOWERS_PER_EVENT * scale)):
        parts.append(em_shower(rng, rng.uniform(-N_TICKS * 0.5, N_TICKS * 0.8)))
    parts.append(radiologicals(rng, scale))
    return Deposits.concat(parts)
