"""One level as either engine measured it: its steps.csv row, its span, its requests (the
native engine's; perf_analyzer reports aggregates only), what went wrong, and its
verdict. What `engine.boundary.LevelEngine.measure` returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sonic_bench.measure.level import Level, LevelResult, MeasurementSettings
from sonic_bench.measure.records import RequestRecord
from sonic_bench.measure.verdict import LevelEvidence, judge_row
from sonic_bench.measure.windows import Stability


@dataclass(frozen=True)
class MeasuredLevel:
    """One level as any engine measured it: its steps.csv row and its requests."""

    level: Level
    row: dict
    span: tuple[float, float]
    stability: Stability
    records: tuple[RequestRecord, ...] = ()  # none from perf_analyzer (it reports aggregates)
    warnings: tuple[str, ...] = ()
    failure: str | None = None  # why the level ended early: the run ends there
    shared_server: bool = False  # another client's requests were on the server too

    @classmethod
    def native(cls, result: LevelResult) -> MeasuredLevel:
        return cls(
            result.level,
            result.as_row(),
            result.span,
            result.stability,
            result.records,
            result.warnings,
            result.failure,
            result.shared_server,
        )

    def answered_latencies(self) -> np.ndarray | None:
        """The measured span's answered latencies; None from an engine that reports
        aggregates only."""
        if not self.records:
            return None if self.row.get("requests") else np.empty(0)
        start, end = self.span
        return np.array(
            [r.latency_ms for r in self.records if r.ok and start <= r.t_recv < end], float
        )

    def judged(self, settings: MeasurementSettings, percentiles: Sequence[int]) -> dict:
        """The row with its verdict (measure/verdict.py)."""
        evidence = LevelEvidence(
            duration_s=self.span[1] - self.span[0],
            min_duration_s=settings.window_s * settings.rule.windows,
            answers=int(self.row.get("requests") or 0),
            errors=int(self.row.get("errors") or 0),
            stable=self.stability is Stability.STABLE,
            failure=self.failure,
            shared_server=self.shared_server,
        )
        return judge_row(self.row, self.answered_latencies(), evidence, percentiles)

    @property
    def clean(self) -> bool:
        """Every request answered, nobody else's on the server: a level a complete run
        may hold."""
        errors = self.row.get("errors") or 0
        answered = self.row.get("requests") or 0
        return self.failure is None and not errors and answered > 0 and not self.shared_server
