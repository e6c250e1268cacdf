"""Reading Triton's /metrics text (Prometheus exposition format) without Prometheus.

Used when no Prometheus is at hand (the fallback) and by tests that compare the harness
with Triton's own counters.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    metric: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)


def _exposed_name(family, sample) -> str:
    """The name as the server wrote it: the parser adds `_total` to counters (OpenMetrics),
    and Triton's counters have no such suffix."""
    if family.type == "counter" and sample.name == family.name + "_total":
        return family.name
    return sample.name


def parse(text: str) -> list[Sample]:
    """Samples of Prometheus' text format, parsed by prometheus_client (the reference
    parser: escaped label values, braces inside them, NaN and +Inf)."""
    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.append(Sample(_exposed_name(family, sample), labels, float(sample.value)))
    return samples


def scrape(url: str, timeout_s: float = 5.0) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return parse(response.read().decode("utf-8", errors="replace"))


def model_value(samples: list[Sample], metric: str, model: str) -> float:
    """Sum of `metric` over the versions of `model`."""
    return sum(s.value for s in samples if s.metric == metric and s.label("model") == model)
