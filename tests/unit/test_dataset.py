"""Partitioning: within a pass every sample goes to exactly one worker; passes follow each other."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from loadgrade.dataset import SampleFeeder, partition, pass_order, resolve_input_columns


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("order", ["sequential", "shuffle"])
@pytest.mark.parametrize("n", [1, 7, 540])
def test_each_sample_exactly_once_per_pass_across_workers(workers: int, order: str, n: int) -> None:
    for pass_number in (1, 2, 3):
        sent = Counter()
        for slot in range(workers):
            sent.update(partition(n, slot=slot, slots=workers, pass_number=pass_number, order=order, seed=11).tolist())
        assert sent == Counter(range(n))


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 5])
def test_feeders_replay_whole_passes_then_stop(workers: int) -> None:
    n, passes = 23, 3
    feeders = [SampleFeeder(n, slot=s, slots=workers, passes=passes, order="shuffle", seed=3) for s in range(workers)]
    sent: Counter[tuple[int, int]] = Counter()
    for feeder in feeders:
        while (item := feeder.next()) is not None:
            sent[item] += 1
        assert feeder.exhausted
        assert feeder.next() is None
    assert sent == Counter((i, p) for i in range(n) for p in range(1, passes + 1))


def test_feeder_without_passes_keeps_going() -> None:
    feeder = SampleFeeder(3, slot=0, slots=1, passes=None)
    items = [feeder.next() for _ in range(10)]
    assert items[-1] == (0, 4)
    assert not feeder.exhausted


def test_more_workers_than_samples_leaves_idle_workers_exhausted() -> None:
    feeder = SampleFeeder(2, slot=3, slots=4, passes=None)
    assert feeder.exhausted
    assert feeder.next() is None


def test_shuffle_is_identical_in_every_process_and_differs_between_passes() -> None:
    first = pass_order(100, pass_number=1, order="shuffle", seed=5)
    assert np.array_equal(first, pass_order(100, pass_number=1, order="shuffle", seed=5))
    assert not np.array_equal(first, pass_order(100, pass_number=2, order="shuffle", seed=5))
    assert not np.array_equal(first, pass_order(100, pass_number=1, order="shuffle", seed=6))


def test_partition_rejects_a_slot_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"slot must be in \[0, 2\), got 2"):
        partition(5, slot=2, slots=2, pass_number=1)


def test_input_column_globs_keep_file_order_and_fail_on_no_match() -> None:
    assert resolve_input_columns(["px*"], ["id", "px0", "px10", "px2"]) == ["px0", "px10", "px2"]
    with pytest.raises(KeyError):
        resolve_input_columns(["nope"], ["id"])
