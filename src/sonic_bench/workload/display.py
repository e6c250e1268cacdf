"""Pictures of the workload: an event display of one plane and example patches per label."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from sonic_bench.workload.detector import N_TICKS, PLANES
from sonic_bench.workload.event import Event
from sonic_bench.workload.physics import LABELS

LABEL_COLOURS = {"none": "#9e9e9e", "track": "#1f77b4", "em": "#d62728", "michel": "#2ca02c"}


def busiest_plane(event: Event, plane: int = 2) -> int:
    """The APA whose `plane` has most hits: the most interesting picture."""
    counts = [
        int(np.sum((event.hits["apa"] == a) & (event.hits["plane"] == plane))) for a in range(6)
    ]
    return int(np.argmax(counts))


def event_display(event: Event, apa: int, plane: int, path: Path) -> Path:
    image = event.images[(apa, plane)]
    hits = event.hits[(event.hits["apa"] == apa) & (event.hits["plane"] == plane)]
    fig, (ax_img, ax_hits) = plt.subplots(1, 2, figsize=(16, 7), sharex=True, sharey=True)
    extent = (0, N_TICKS, image.shape[0], 0)
    shown = ax_img.imshow(image, aspect="auto", cmap="viridis", extent=extent, vmin=-2, vmax=12)
    fig.colorbar(shown, ax=ax_img, label="network input (0.5 x ADC, 6-tick average)")
    ax_img.set_title(f"event {event.index}, APA {apa}, plane {PLANES[plane].name}: waveforms")
    for code, name in enumerate(LABELS):
        mine = hits[hits["label"] == code]
        ax_hits.scatter(
            mine["tick"], mine["wire"], s=2, c=LABEL_COLOURS[name], label=f"{name} ({len(mine)})"
        )
    ax_hits.set_title(f"{len(hits)} hits by truth label")
    ax_hits.legend(markerscale=6, loc="upper right")
    for ax in (ax_img, ax_hits):
        ax.set_xlabel("tick (0.5 us)")
    ax_img.set_ylabel("wire")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def patch_grid(event: Event, path: Path, per_label: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(LABELS), per_label, figsize=(per_label * 1.8, len(LABELS) * 1.9))
    chosen = {code: [] for code in range(len(LABELS))}
    for group in event.groups():
        for code in chosen:
            index = np.flatnonzero(group.hits["label"] == code)
            take = rng.permutation(index)[:per_label]
            chosen[code] += [group.patches[i, :, :, 0] for i in take]
    for code, name in enumerate(LABELS):
        picks = chosen[code]
        pick = rng.permutation(len(picks))[:per_label] if picks else []
        for column in range(per_label):
            ax = axes[code, column]
            ax.set_xticks([])
            ax.set_yticks([])
            if column < len(pick):
                ax.imshow(picks[pick[column]], cmap="viridis", vmin=-2, vmax=12)
            if column == 0:
                ax.set_ylabel(name, color=LABEL_COLOURS[name], fontsize=12)
    fig.suptitle("48x48 patches (wire x drift bin) by truth label")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
