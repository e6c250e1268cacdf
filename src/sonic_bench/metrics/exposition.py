"""Reading Triton's /metrics text (Prometheus exposition format) without Prometheus.

Used when no Prometheus is at hand (the fallback) and by tests that compare the harness
with Triton's own counters.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    metric: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)


def parse(text: str) -> list[Sample]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        pairs = tuple(sorted(_LABEL.findall(labels or "")))
        try:
            samples.append(Sample(name, pairs, float(value)))
        except ValueError:
            continue
    return samples


def scrape(url: str, timeout_s: float = 5.0) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return parse(response.read().decode("utf-8", errors="replace"))


def model_value(samples: list[Sample], metric: str, model: str) -> float:
    """Sum of `metric` over the versions of `model`."""
    return sum(s.value for s in samples if s.metric == metric and s.label("model") == model)
