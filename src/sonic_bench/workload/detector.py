"""ProtoDUNE-SP geometry and readout constants (paper Sec. 3.1, DESIGN.md).

Cryostat frame: x drift (cathode at x = 0, APAs at x = +-3.6 m), y up, z along the beam.
Six APAs, three on each side; each reads one drift volume through two induction planes
(U, V: 800 wrapped wires) and one collection plane (Z: 960 wires, 480 on each face; the
outer face looks at the cryostat wall and sees noise and the odd radiological blip).
"""

from __future__ import annotations

from dataclasses import dataclass

N_APA = 6
PATCHES_PER_EVENT = 55_000  # hits to classify in a typical event (the paper's figure)
APA_WIDTH_M = 2.3  # along z
HEIGHT_M = 6.0
DRIFT_LENGTH_M = 3.6
N_TICKS = 6000  # 3 ms at 0.5 us
TICK_US = 0.5
DRIFT_SPEED_MM_PER_US = 1.6
NOISE_RMS_ADC = 2.5
TICKS_PER_BIN = 6  # patch images average 6 ticks: 1000 drift bins
N_BINS = N_TICKS // TICKS_PER_BIN
MM_PER_TICK = DRIFT_SPEED_MM_PER_US * TICK_US  # 0.8 mm of drift per tick


@dataclass(frozen=True)
class Plane:
    index: int  # 0 U, 1 V, 2 Z (collection)
    name: str
    n_wires: int
    pitch_mm: float
    angle_deg: float  # wire-coordinate direction, from the z axis toward y
    collection: bool

    @property
    def active_wires(self) -> int:
        """Wires that see the active drift volume (one face of the collection plane)."""
        return self.n_wires // 2 if self.collection else self.n_wires


PLANES = (
    Plane(0, "U", 800, 4.669, 35.7, collection=False),
    Plane(1, "V", 800, 4.669, -35.7, collection=False),
    Plane(2, "Z", 960, 4.790, 0.0, collection=True),
)
N_CHANNELS = N_APA * sum(p.n_wires for p in PLANES)  # 15,360


def apa_side_and_column(apa: int) -> tuple[int, int]:
    """Side -1 (x < 0) or +1, and column 0..2 along z."""
    return (-1 if apa < 3 else 1), apa % 3
