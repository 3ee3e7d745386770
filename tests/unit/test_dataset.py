"""Pass orders and the master's hand-out: within a pass every sample goes out exactly once, whoever asks."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from loadgrade.dataset import pass_order, resolve_input_columns
from loadgrade.dispenser import MAX_CHUNK, SampleDispenser


def drain(dispenser: SampleDispenser, *, workers: int, seed: int = 0, give_back_share: float = 0.0) -> Counter:
    """Workers ask for random amounts; some hand part of what they got back (their users stopped)."""
    rng = random.Random(seed)
    sent: Counter[tuple[int, int]] = Counter()
    while not dispenser.exhausted:
        items = dispenser.take(dispenser.chunk_size(rng.randint(1, 40), workers))
        keep = len(items) - int(len(items) * give_back_share * rng.random())
        dispenser.give_back(items[keep:], epoch=dispenser.epoch)
        sent.update(items[:keep])
    return sent


@pytest.mark.parametrize("workers", [1, 2, 5])
@pytest.mark.parametrize("order", ["sequential", "shuffle"])
@pytest.mark.parametrize("n", [1, 7, 540])
def test_each_sample_exactly_once_per_pass_whoever_asks(workers: int, order: str, n: int) -> None:
    dispenser = SampleDispenser(n, passes=3, order=order, seed=11)  # type: ignore[arg-type]
    sent = drain(dispenser, workers=workers, give_back_share=0.3)
    assert sent == Counter((i, p) for i in range(n) for p in (1, 2, 3))
    assert dispenser.take(5) == []


def test_every_stage_starts_from_the_first_sample_of_the_same_order() -> None:
    dispenser = SampleDispenser(50, passes=None, order="shuffle", seed=4)
    first_stage = [i for i, _ in dispenser.take(10)]
    dispenser.take(40)  # the rest of the first pass: a hand-out never crosses the end of a pass
    dispenser.take(5)  # into the second
    dispenser.new_stage()
    second_stage = dispenser.take(10)
    expected = pass_order(50, pass_number=1, order="shuffle", seed=4)[:10].tolist()
    assert [i for i, _ in second_stage] == first_stage == expected
    assert {p for _, p in second_stage} == {3}  # pass numbers keep counting: the cut pass was pass 2


def test_passes_bound_each_stage() -> None:
    dispenser = SampleDispenser(3, passes=1)
    assert drain(dispenser, workers=2) == Counter((i, 1) for i in range(3))
    dispenser.new_stage()
    assert not dispenser.exhausted
    assert drain(dispenser, workers=2) == Counter((i, 2) for i in range(3))


def test_samples_handed_back_from_an_earlier_stage_are_not_sent_again() -> None:
    dispenser = SampleDispenser(10, passes=1)
    held = dispenser.take(4)
    old_epoch = dispenser.epoch
    dispenser.new_stage()
    dispenser.give_back(held, epoch=old_epoch)
    assert [i for i, _ in dispenser.take(4)] == [0, 1, 2, 3]  # the new stage's own order, nothing stale first


def test_chunks_are_small_enough_for_a_fair_share() -> None:
    assert SampleDispenser(540, passes=None).chunk_size(512, 2) == 67
    assert SampleDispenser(10**6, passes=None).chunk_size(10**4, 2) == MAX_CHUNK
    assert SampleDispenser(3, passes=None).chunk_size(50, 8) == 1


def test_without_passes_it_keeps_going() -> None:
    dispenser = SampleDispenser(3, passes=None)
    items = [item for _ in range(4) for item in dispenser.take(3)]
    assert items[-1] == (2, 4)
    assert not dispenser.exhausted


def test_an_empty_dataset_is_refused() -> None:
    with pytest.raises(ValueError, match="a dataset of 0 samples cannot be replayed"):
        SampleDispenser(0, passes=None)


def test_shuffle_is_identical_in_every_process_and_differs_between_passes() -> None:
    first = pass_order(100, pass_number=1, order="shuffle", seed=5)
    assert np.array_equal(first, pass_order(100, pass_number=1, order="shuffle", seed=5))
    assert not np.array_equal(first, pass_order(100, pass_number=2, order="shuffle", seed=5))
    assert not np.array_equal(first, pass_order(100, pass_number=1, order="shuffle", seed=6))


def test_input_column_globs_keep_file_order_and_fail_on_no_match() -> None:
    assert resolve_input_columns(["px*"], ["id", "px0", "px10", "px2"]) == ["px0", "px10", "px2"]
    with pytest.raises(KeyError):
        resolve_input_columns(["nope"], ["id"])
