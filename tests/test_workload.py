"""The simulated ProtoDUNE-SP workload: events, hits, patches, batches, files."""

from __future__ import annotations

import re

import numpy as np
import pytest

from sonic_bench.errors import SonicBenchError
from sonic_bench.model.signature import Batch
from sonic_bench.workload import physics
from sonic_bench.workload.batching import (
    LARGE_BATCH_SETTING,
    PAPER_AVERAGE,
    SMALL_BATCH_SETTING,
    batch_stats,
    cut_requests,
    parse_batch_setting,
)
from sonic_bench.workload.dataset import Dataset, write_dataset
from sonic_bench.workload.detector import N_CHANNELS, PLANES
from sonic_bench.workload.event import simulate_event
from sonic_bench.workload.patches import HALF
from sonic_bench.workload.plan import uniform_batches
from sonic_bench.workload.readout import GAIN_ADC_TICK_PER_MEV, deposits_in_apa, read_out_plane

FULL_EVENTS = 3


@pytest.fixture(scope="module")
def full_events():
    return [simulate_event(seed=1234, index=i) for i in range(FULL_EVENTS)]


@pytest.fixture(scope="module")
def reduced_events():
    return [simulate_event(seed=1234, index=i, scale=0.25) for i in range(FULL_EVENTS)]


def test_geometry_has_the_papers_channel_count():
    assert N_CHANNELS == 15_360


def test_same_seed_same_patches_other_seed_differs():
    a, b = (next(simulate_event(7, 0, 0.1).groups()) for _ in range(2))
    np.testing.assert_array_equal(a.patches, b.patches)
    c = next(simulate_event(8, 0, 0.1).groups())
    assert a.patches.shape != c.patches.shape or not np.array_equal(a.patches, c.patches)


def test_full_event_has_about_55000_hits(full_events):
    mean = np.mean([len(e.hits) for e in full_events])
    assert 0.7 * 55_000 <= mean <= 1.3 * 55_000


def test_reduced_event_scales_with_event_scale(full_events, reduced_events):
    full = np.mean([len(e.hits) for e in full_events])
    reduced = np.mean([len(e.hits) for e in reduced_events])
    assert reduced == pytest.approx(0.25 * full, rel=0.3)


def test_all_labels_are_present_and_tracks_dominate(full_events):
    hits = np.concatenate([e.hits for e in full_events])
    fractions = np.bincount(hits["label"], minlength=4) / len(hits)
    assert fractions.sum() == pytest.approx(1.0)
    assert (fractions > 0).all()
    assert fractions[physics.TRACK] == fractions.max()
    assert fractions[physics.MICHEL] < 0.02  # Michel electrons are rare


def test_collection_charge_per_wire_is_a_mip():
    rng = np.random.default_rng(3)
    direction = np.array([0.3, -0.8, 0.5])
    direction /= np.linalg.norm(direction)
    deposits = physics.muon(rng, np.array([1.5, 5.5, 0.3]), direction, 300, 0.0, False)
    collection = PLANES[2]
    readout = read_out_plane(
        deposits, deposits_in_apa(deposits, 3), 3, collection, np.random.default_rng(1)
    )
    track = readout.hits[readout.hits["label"] == physics.TRACK]
    per_wire = np.bincount(track["wire"], track["integral_adc"])
    per_wire = per_wire[per_wire > 0]
    path_cm = collection.pitch_mm / 10 / abs(direction[2])
    de_dx = np.median(per_wire) / GAIN_ADC_TICK_PER_MEV / path_cm
    assert len(per_wire) > 100
    assert 1.5 <= de_dx <= 2.2  # MeV/cm: a minimum-ionising particle in argon


def test_michel_electron_starts_where_the_stopping_muon_ends():
    rng = np.random.default_rng(11)
    deposits = physics.cosmic_muon(rng, stopping=True, t0=0.0)
    track = deposits.xyz[deposits.label == physics.TRACK]
    michel = deposits.xyz[deposits.label == physics.MICHEL]
    assert len(michel) > 0
    top = np.argmax(track[:, 1])
    end = track[np.argmin(track[:, 1])] if top == 0 else track[-1]
    assert np.linalg.norm(michel[0] - end) < 0.01  # within 1 cm of the track's end


def test_michel_hits_sit_next_to_track_hits(full_events):
    near = []
    for event in full_events:
        for apa, plane in {
            (int(h["apa"]), int(h["plane"])) for h in event.hits[event.hits["label"] == 3]
        }:
            group = event.hits[(event.hits["apa"] == apa) & (event.hits["plane"] == plane)]
            tracks = group[group["label"] == physics.TRACK]
            for hit in group[group["label"] == physics.MICHEL][:5]:
                distance = (
                    np.abs(tracks["wire"].astype(int) - hit["wire"])
                    + np.abs(tracks["tick"].astype(int) - hit["tick"]) / 6
                )
                near.append(distance.min() < 30)
    assert near and np.mean(near) > 0.8


def test_patch_values_centres_and_edge_padding(full_events):
    event = full_events[0]
    for group in event.groups():
        p = group.patches
        assert p.dtype == np.float32 and p.shape[1:] == (48, 48, 1)
        assert p.min() >= -5.0 and p.max() <= 15.0
        real = group.hits["label"] != physics.NONE
        assert np.count_nonzero(p[real, HALF, HALF, 0]) / real.sum() > 0.99
        edge = group.hits["wire"] < HALF
        for patch, wire in zip(p[edge], group.hits["wire"][edge], strict=True):
            assert not patch[: HALF - wire].any()  # rows before wire 0 are padding


@pytest.mark.parametrize("setting", [SMALL_BATCH_SETTING, LARGE_BATCH_SETTING])
def test_average_batch_near_the_papers(full_events, setting):
    stats = batch_stats(b for e in full_events for b in cut_requests(e.groups(), e.index, setting))
    assert stats.avg_batch_size == pytest.approx(PAPER_AVERAGE[setting], rel=0.1)


def test_batch_setting_parsing():
    assert parse_batch_setting("small") == 256 and parse_batch_setting("large") == 2300
    assert parse_batch_setting("100") == 100
    with pytest.raises(SonicBenchError, match="batch size setting 'huge' is not valid"):
        parse_batch_setting("huge")


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "w.sbwl"
    write_dataset(path, seed=5, n_events=2, event_scale=0.1)
    return path


def test_dataset_round_trip_streams_the_same_patches(dataset_file):
    with Dataset(dataset_file) as data:
        assert data.header.n_events == 2 and data.header.event_scale == 0.1
        stored = list(data.groups(1))
    simulated = list(simulate_event(5, 1, 0.1).groups())
    assert len(stored) == len(simulated)
    for a, b in zip(stored, simulated, strict=True):
        np.testing.assert_array_equal(a.patches, b.patches)
        np.testing.assert_array_equal(a.hits, b.hits)


def test_dataset_batches_for_any_setting(dataset_file):
    with Dataset(dataset_file) as data:
        sizes = [b.size for b in data.requests(100)]
    assert max(sizes) == 100 and sum(sizes) > 100


def test_truncated_dataset_is_one_clear_error(dataset_file, tmp_path):
    broken = tmp_path / "broken.sbwl"
    broken.write_bytes(dataset_file.read_bytes()[: dataset_file.stat().st_size // 2])
    expected = re.escape(f"workload file {broken} is corrupt or truncated")
    with pytest.raises(SonicBenchError, match=expected), Dataset(broken) as data:
        list(data.requests(256))


def test_corrupt_member_is_one_clear_error(dataset_file, tmp_path):
    data = bytearray(dataset_file.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = b"\xff" * 64
    broken = tmp_path / "corrupt.sbwl"
    broken.write_bytes(bytes(data))
    with pytest.raises(SonicBenchError, match="corrupt or truncated"), Dataset(broken) as d:
        list(d.requests(256))


def test_missing_dataset_names_the_file(tmp_path):
    with pytest.raises(SonicBenchError, match=r"nothing\.sbwl not found"):
        Dataset(tmp_path / "nothing.sbwl")


def test_uniform_batches_take_perf_analyzers_consecutive_patches():
    """As perf_analyzer's -b fills a batch from its input data: in turn, wrapping around."""
    batches = [Batch((np.arange(5)[:, None],), 5), Batch((np.arange(5, 7)[:, None],), 2)]
    uniform = uniform_batches(batches, 4)
    assert [b.tensors[0][:, 0].tolist() for b in uniform] == [[0, 1, 2, 3], [4, 5, 6, 0]]
    assert [b.size for b in uniform] == [4, 4]
