"""From deposits to what the detector reads out: per-plane waveforms and hits.

Per (APA, plane): charge drifts to the wires (diffusion widens it in time), becomes a
deconvolved-waveform-like signal (unipolar on collection, bipolar on induction), white
noise of 2.5 ADC is added, and a threshold hit finder picks peaks with their truth label.
Outside regions of interest around hits the waveform is zeroed, as signal processing
does, which is why real patches are sparse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d

from sonic_bench.workload.detector import (
    APA_WIDTH_M,
    DRIFT_LENGTH_M,
    MM_PER_TICK,
    N_TICKS,
    NOISE_RMS_ADC,
    Plane,
    apa_side_and_column,
)
from sonic_bench.workload.physics import Deposits

GAIN_ADC_TICK_PER_MEV = 150.0  # collection: a MIP gives ~25 ADC peaks
INDUCTION_LOBE = 0.6  # induction lobe peak relative to a collection peak of equal charge
HIT_THRESHOLD_ADC = 12.0  # 4.8 sigma: ~70 noise-only hits in a whole event
MAX_HIT_TICKS = 16  # long pulses (tracks along the drift) are split into several hits
INTEGRAL_HALF_WIDTH = 8  # ticks each side of the peak summed for a hit's charge (~4 sigma)
ROI_PAD_TICKS = 15
TAPS = np.arange(-12, 13)

HIT_DTYPE = np.dtype(
    [
        ("event", "u4"),
        ("apa", "u1"),
        ("plane", "u1"),
        ("wire", "u2"),
        ("tick", "u2"),
        ("label", "u1"),
        ("peak_adc", "f4"),
        ("integral_adc", "f4"),
    ]
)


@dataclass(frozen=True)
class PlaneReadout:
    waveform: np.ndarray  # (wires, ticks) float32, ROI zero-suppressed
    hits: np.ndarray  # HIT_DTYPE


def deposits_in_apa(deposits: Deposits, apa: int) -> np.ndarray:
    side, column = apa_side_and_column(apa)
    x, z = deposits.xyz[:, 0], deposits.xyz[:, 2]
    in_side = (x < 0) if side < 0 else (x >= 0)
    in_column = (z >= column * APA_WIDTH_M) & (z < (column + 1) * APA_WIDTH_M)
    return np.flatnonzero(in_side & in_column & (np.abs(x) <= DRIFT_LENGTH_M))


def project(deposits: Deposits, index: np.ndarray, apa: int, plane: Plane):
    """Wire, tick (float) and diffusion width of each deposit on `plane`."""
    _, column = apa_side_and_column(apa)
    xyz = deposits.xyz[index]
    drift_mm = (DRIFT_LENGTH_M - np.abs(xyz[:, 0])) * 1000.0
    tick = deposits.t0_ticks[index] + drift_mm / MM_PER_TICK
    z_local = xyz[:, 2] - column * APA_WIDTH_M
    angle = np.radians(plane.angle_deg)
    coordinate = (z_local * np.cos(angle) + xyz[:, 1] * np.sin(angle)) * 1000.0 / plane.pitch_mm
    wire = np.floor(coordinate).astype(np.int64)
    wire = np.clip(wire, 0, plane.active_wires - 1) if plane.collection else wire % plane.n_wires
    sigma = np.sqrt(1.5**2 + (drift_mm / (DRIFT_LENGTH_M * 1000.0)) * 2.0**2)
    return wire, tick, sigma


def _signal_image(plane: Plane, wire, tick, sigma, energy) -> np.ndarray:
    base = np.floor(tick).astype(np.int64)
    ticks = base[:, None] + TAPS[None, :]
    offset = ticks - tick[:, None]
    s = sigma[:, None]
    shape = np.exp(-0.5 * (offset / s) ** 2)
    if plane.collection:
        weights = shape / (np.sqrt(2 * np.pi) * s)
    else:  # bipolar: positive lobe, then negative, zero net charge
        peak_collection = 1.0 / (np.sqrt(2 * np.pi) * s)
        weights = -(offset / s) * shape * INDUCTION_LOBE * peak_collection * np.exp(0.5)
    weights = weights * (energy * GAIN_ADC_TICK_PER_MEV)[:, None]
    keep = (ticks >= 0) & (ticks < N_TICKS)
    flat = (wire[:, None] * N_TICKS + ticks)[keep]
    image = np.bincount(flat, weights[keep], minlength=plane.n_wires * N_TICKS)
    return image.astype(np.float32).reshape(plane.n_wires, N_TICKS)


def _label_image(plane: Plane, wire, tick, label) -> np.ndarray:
    labels = np.zeros(plane.n_wires * N_TICKS, np.uint8)
    t = np.round(tick).astype(np.int64)
    ok = (t >= 0) & (t < N_TICKS)
    # Higher codes win where particles overlap: michel > em > track > none.
    np.maximum.at(labels, wire[ok] * N_TICKS + t[ok], label[ok])
    return maximum_filter1d(labels.reshape(plane.n_wires, N_TICKS), size=7, axis=1)


def find_hits(waveform: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Peaks of above-threshold pulses, one per pulse or per MAX_HIT_TICKS of a long one."""
    n_wires, n_ticks = waveform.shape
    padded = np.zeros((n_wires, n_ticks + 1), np.float32)
    padded[:, :n_ticks] = waveform
    flat = padded.ravel()
    index = np.flatnonzero(flat > HIT_THRESHOLD_ADC)
    hits = np.zeros(0, HIT_DTYPE)
    if index.size == 0:
        return hits
    starts = np.r_[True, np.diff(index) != 1]
    run_start = index[starts][np.cumsum(starts) - 1]
    piece = (
        np.cumsum(starts) * (n_ticks // MAX_HIT_TICKS + 2) + (index - run_start) // MAX_HIT_TICKS
    )
    first = np.r_[True, np.diff(piece) != 0]
    bounds = np.flatnonzero(first)
    values = flat[index]
    peak = np.maximum.reduceat(values, bounds)
    # Position of the maximum within each piece.
    piece_number = np.cumsum(first) - 1
    is_peak = values == peak[piece_number]
    _, where = np.unique(piece_number[is_peak], return_index=True)
    peak_index = index[is_peak][where]
    wire, tick = np.divmod(peak_index, n_ticks + 1)
    hits = np.zeros(len(peak_index), HIT_DTYPE)
    hits["wire"], hits["tick"] = wire, tick
    hits["peak_adc"] = peak
    hits["integral_adc"] = _integrals(waveform, wire, tick)
    hits["label"] = labels[wire, tick]
    return hits


def _integrals(waveform: np.ndarray, wire: np.ndarray, tick: np.ndarray) -> np.ndarray:
    """Pulse area around each peak, as a hit fit would give it (not just the part above
    threshold), so that charge per wire can be compared with a MIP."""
    offsets = np.arange(-INTEGRAL_HALF_WIDTH, INTEGRAL_HALF_WIDTH + 1)
    ticks = np.clip(tick[:, None] + offsets[None, :], 0, waveform.shape[1] - 1)
    return waveform[wire[:, None], ticks].sum(axis=1)


def read_out_plane(
    deposits: Deposits, index: np.ndarray, apa: int, plane: Plane, noise_rng: np.random.Generator
) -> PlaneReadout:
    wire, tick, sigma = project(deposits, index, apa, plane)
    energy, label = deposits.energy_mev[index], deposits.label[index]
    waveform = _signal_image(plane, wire, tick, sigma, energy)
    waveform += noise_rng.standard_normal(waveform.shape, dtype=np.float32) * NOISE_RMS_ADC
    labels = _label_image(plane, wire, tick, label)
    hits = find_hits(waveform, labels)
    hits["apa"], hits["plane"] = apa, plane.index
    roi = maximum_filter1d(waveform > HIT_THRESHOLD_ADC, size=2 * ROI_PAD_TICKS + 1, axis=1)
    waveform *= roi
    return PlaneReadout(waveform=waveform, hits=hits)
