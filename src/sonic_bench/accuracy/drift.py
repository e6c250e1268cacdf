"""How far served answers are from the in-process FP32 reference (pure functions).

Per output: the largest and mean absolute difference. Where an output is a classifier's
(its config names a label file): the fraction of samples whose label (argmax) changes.
Where an output is a score with an analysis cut (EmTrackMichelId's Michel score): the
fraction of samples on the other side of the cut, and per event the change in the number
of samples tagged. An answer closer to another request's reference than to its own was
returned for the wrong request (a mixed-up batch): named, never averaged in.

`AccuracySummary` is the record a run folder keeps (`accuracy.json`), dumped and loaded by
the same class.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

Outputs = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class ScoreCut:
    """An output read as a tag: a sample is tagged when its score is above `threshold`."""

    output: str
    threshold: float


@dataclass(frozen=True)
class Judging:
    """What the comparison knows of the model: its classifier outputs and score cuts."""

    labelled: tuple[str, ...] = ()
    score: ScoreCut | None = None


@dataclass(frozen=True)
class OutputDrift:
    name: str
    max_abs: float
    mean_abs: float
    values: int


@dataclass(frozen=True)
class LabelDrift:
    output: str
    changed: int
    samples: int

    @property
    def fraction(self) -> float:
        return self.changed / self.samples if self.samples else float("nan")


@dataclass(frozen=True)
class ScoreDrift:
    output: str
    threshold: float
    disagree: int  # samples on the other side of the cut
    samples: int
    events: int
    events_changed: int  # events whose tagged count changed
    max_event_change: int  # the largest change of an event's tagged count
    tagged_reference: int
    tagged_served: int

    @property
    def agreement(self) -> float:
        return 1 - self.disagree / self.samples if self.samples else float("nan")


@dataclass(frozen=True)
class MixedUp:
    """An answer to request `batch` that is `matches`'s answer."""

    batch: int
    matches: int


@dataclass(frozen=True)
class AccuracySummary:
    model: str
    reference: str  # what the answers were compared with
    batches: int
    answers: int
    failed: int  # requests without an answer: their batches are not compared
    samples: int
    outputs: tuple[OutputDrift, ...]
    labels: tuple[LabelDrift, ...] = ()
    score: ScoreDrift | None = None
    mixed_up: tuple[MixedUp, ...] = ()
    unanswered: tuple[int, ...] = field(default=())  # batches no answer came for

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> AccuracySummary:
        return cls(
            model=data["model"],
            reference=data["reference"],
            batches=int(data["batches"]),
            answers=int(data["answers"]),
            failed=int(data["failed"]),
            samples=int(data["samples"]),
            outputs=tuple(OutputDrift(**o) for o in data["outputs"]),
            labels=tuple(LabelDrift(**d) for d in data.get("labels") or ()),
            score=ScoreDrift(**data["score"]) if data.get("score") else None,
            mixed_up=tuple(MixedUp(**m) for m in data.get("mixed_up") or ()),
            unanswered=tuple(data.get("unanswered") or ()),
        )

    @property
    def largest_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=float("nan"))

    @property
    def label_change_fraction(self) -> float:
        changed = sum(d.changed for d in self.labels)
        samples = sum(d.samples for d in self.labels)
        return changed / samples if samples else float("nan")

    def problems(self) -> list[str]:
        """What makes the answers untrustworthy, as the run's warnings say it."""
        said = [
            f"the answer to batch {m.batch} is batch {m.matches}'s (it matches that "
            "request's reference): the server or something in front returned an answer "
            "for the wrong request"
            for m in self.mixed_up
        ]
        if self.unanswered:
            shown = ", ".join(map(str, self.unanswered[:5]))
            more = "" if len(self.unanswered) <= 5 else f" and {len(self.unanswered) - 5} more"
            said.append(f"{len(self.unanswered)} batches had no answer to compare ({shown}{more})")
        return said


def _distance(answer: Outputs, reference: Outputs, names: Sequence[str]) -> float:
    """Mean absolute difference over every output, as float64."""
    total, count = 0.0, 0
    for name in names:
        diff = _abs_diff(answer[name], reference[name])
        total += float(diff.sum())
        count += diff.size
    return total / count if count else 0.0


# An answer is taken for another request's only when it is this many times further from its
# own reference than the run's typical answer is, and at least twice as close to another's:
# a reduced-precision model's drift, or two requests of near-equal patches, is no mix-up.
SUSPECT_FACTOR = 3.0
CLOSER_FACTOR = 2.0


def find_mixed_up(
    answers: Mapping[int, Sequence[Outputs]], references: Sequence[Outputs], names: Sequence[str]
) -> list[MixedUp]:
    """Answers that are another request's (of the same shape): far from their own
    reference against the group's typical distance, and much closer to another's. Sound
    while fewer than half the answers are mixed up (the typical distance is their median)."""
    own = {
        (index, k): _distance(answer, references[index], names)
        for index, given in answers.items()
        for k, answer in enumerate(given)
    }
    typical = float(np.median(list(own.values()))) if own else 0.0
    by_shape: dict[tuple, list[int]] = defaultdict(list)
    for index, reference in enumerate(references):
        by_shape[tuple(np.shape(reference[n]) for n in names)].append(index)
    found = []
    for (index, k), distance in sorted(own.items()):
        if distance == 0.0 or distance <= SUSPECT_FACTOR * typical:
            continue
        answer = answers[index][k]
        shape = tuple(np.shape(references[index][n]) for n in names)
        others = {j: _distance(answer, references[j], names) for j in by_shape[shape] if j != index}
        closest = min(others, key=others.__getitem__, default=None)
        closer = closest is not None and others[closest] * CLOSER_FACTOR < distance
        if closer and (not found or found[-1].batch != index):  # a batch named once
            found.append(MixedUp(index, closest))
    return found


def _numeric(reference: Outputs) -> list[str]:
    return [n for n, v in reference.items() if np.asarray(v).dtype.kind in "fiub"]


def _abs_diff(answer: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(answer, np.float64) - np.asarray(reference, np.float64))


class DriftTally:
    """Answers compared as they come, a group of batches at a time (an event's, say);
    `summary()` says what all of them came to."""

    def __init__(self, model: str, reference: str, judging: Judging = Judging()):
        self.model, self.reference, self.judging = model, reference, judging
        self.names: list[str] = []
        self.max_abs: dict[str, float] = defaultdict(float)
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.changed = dict.fromkeys(judging.labelled, 0)
        self.labelled = dict.fromkeys(judging.labelled, 0)
        self.disagree = 0
        self.tagged: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # event: [ref, served]
        self.batches = self.answers = self.failed = self.samples = 0
        self.mixed: list[MixedUp] = []
        self.unanswered: list[int] = []

    def add(
        self,
        answers: Mapping[int, Sequence[Outputs]],
        references: Sequence[Outputs],
        failed: int = 0,
        event: int | None = None,
    ) -> None:
        """One group: batch index (in the group) -> its answers (one per sending); the
        group's references in order; its failed requests; the event it is."""
        offset = self.batches
        if references and not self.names:
            self.names = _numeric(references[0])
        names = self.names
        mixed = find_mixed_up(answers, references, names)
        self.mixed += [MixedUp(m.batch + offset, m.matches + offset) for m in mixed]
        wrong = {m.batch for m in mixed}
        self.batches += len(references)
        self.failed += failed
        self.answers += sum(len(a) for a in answers.values())
        self.unanswered += [offset + i for i in range(len(references)) if not answers.get(i)]
        for index, given in answers.items():
            if index in wrong or not given:
                continue
            self._compare(given, references[index], event if event is not None else 0)

    def _compare(self, given: Sequence[Outputs], reference: Outputs, event: int) -> None:
        if self.names:
            self.samples += len(np.asarray(reference[self.names[0]]))
        for answer in given:
            for name in self.names:
                diff = _abs_diff(answer[name], reference[name])
                if diff.size:
                    self.max_abs[name] = max(self.max_abs[name], float(diff.max()))
                self.sums[name] += float(diff.sum())
                self.counts[name] += diff.size
        first = given[0]
        for name in self.judging.labelled:
            want = np.argmax(reference[name], axis=-1)
            self.changed[name] += int(np.count_nonzero(np.argmax(first[name], axis=-1) != want))
            self.labelled[name] += want.size
        if (cut := self.judging.score) is not None:
            want_tag = np.asarray(reference[cut.output]).ravel() > cut.threshold
            got_tag = np.asarray(first[cut.output]).ravel() > cut.threshold
            self.disagree += int(np.count_nonzero(want_tag != got_tag))
            self.tagged[event][0] += int(want_tag.sum())
            self.tagged[event][1] += int(got_tag.sum())

    def summary(self) -> AccuracySummary:
        outputs = tuple(
            OutputDrift(
                n,
                self.max_abs[n],
                self.sums[n] / self.counts[n] if self.counts[n] else float("nan"),
                self.counts[n],
            )
            for n in self.names
        )
        labels = tuple(
            LabelDrift(n, self.changed[n], self.labelled[n]) for n in self.judging.labelled
        )
        score = None
        if (cut := self.judging.score) is not None:
            changes = [abs(served - want) for want, served in self.tagged.values()]
            score = ScoreDrift(
                cut.output,
                cut.threshold,
                self.disagree,
                self.samples,
                len(self.tagged),
                sum(1 for c in changes if c),
                max(changes, default=0),
                sum(t[0] for t in self.tagged.values()),
                sum(t[1] for t in self.tagged.values()),
            )
        return AccuracySummary(
            self.model,
            self.reference,
            self.batches,
            self.answers,
            self.failed,
            self.samples,
            outputs,
            labels,
            score,
            tuple(self.mixed),
            tuple(self.unanswered),
        )
