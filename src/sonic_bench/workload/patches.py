"""Patches as larrecodnn's PointIdAlg builds them (DESIGN.md).

Per (TPC, plane) the waveforms are averaged over 6 ticks (1000 drift bins), clamped to
[-10, 30] ADC and scaled by 0.5; a patch is 48 wires x 48 drift bins centred on the hit
(wire w-24..w+23, bin t/6-24..t/6+23), zero outside the plane, NHWC float32.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sonic_bench.workload.detector import N_BINS, TICKS_PER_BIN

PATCH_SIZE = 48
HALF = PATCH_SIZE // 2
CLAMP_ADC = (-10.0, 30.0)
SCALE = 0.5


def plane_image(waveform: np.ndarray) -> np.ndarray:
    """(wires, ticks) waveform -> (wires, 1000) network image."""
    wires = waveform.shape[0]
    binned = waveform.reshape(wires, N_BINS, TICKS_PER_BIN).mean(axis=2, dtype=np.float32)
    np.clip(binned, *CLAMP_ADC, out=binned)
    binned *= SCALE
    return binned


def cut_patches(image: np.ndarray, wires: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """(n, 48, 48, 1) float32 patches centred on each (wire, tick)."""
    padded = np.pad(image, HALF)
    windows = sliding_window_view(padded, (PATCH_SIZE, PATCH_SIZE))
    bins = ticks.astype(np.int64) // TICKS_PER_BIN
    patches = windows[wires.astype(np.int64), bins]
    return np.ascontiguousarray(patches, dtype=np.float32)[..., None]
