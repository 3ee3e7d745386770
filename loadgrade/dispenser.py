"""The master's hand-out of samples: every level replays the same samples, whatever the users and workers.

Workers ask the master for small chunks of the current pass as their users need them, so a worker with no users
(a 1-user first step on two workers), one that joined late or one that was lost never holds back a share of the
dataset. Every stage begins a fresh pass from the first sample of the same order, so a stage shorter than a pass
covers the same samples as every other stage (as far as it gets), and the analysis can compare levels sample by
sample. Within a pass each sample is handed out exactly once; samples a worker hands back (its users stopped
before they were sent) go to the front of the queue for the next ask. ``dataset.passes`` bounds each stage: a
stage that has sent its passes hands out nothing more, and the run stops once the last stage has.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from loadgrade.dataset import Order, pass_order

__all__ = ["MAX_CHUNK", "SampleDispenser"]

MAX_CHUNK = 512  # samples in one hand-out at most: a worker at 17 k requests/s asks about 35 times a second
CHUNKS_PER_PASS_PER_WORKER = 4  # small datasets: chunks small enough that every worker gets a fair share


class SampleDispenser:
    """Hands out ``(sample index, pass number)`` pairs pass after pass, restarting the order at every stage.

    The pass number is global and increasing; the *order* of a pass is that of the k-th pass of its stage, so the
    first pass of every stage visits the samples in the same order. A stage that begins while a pass is under way
    cuts that pass short. ``passes`` bounds the passes of each stage.

    >>> dispenser = SampleDispenser(5, passes=None)
    >>> dispenser.take(3), dispenser.take(3)
    ([(0, 1), (1, 1), (2, 1)], [(3, 1), (4, 1)])
    >>> dispenser.take(1)
    [(0, 2)]
    >>> dispenser.new_stage(); dispenser.take(2)
    [(0, 3), (1, 3)]
    >>> dispenser.give_back([(1, 3)], epoch=dispenser.epoch); dispenser.take(2)
    [(1, 3)]
    >>> bounded = SampleDispenser(2, passes=1)
    >>> bounded.take(5), bounded.take(5), bounded.exhausted
    ([(0, 1), (1, 1)], [], True)
    >>> bounded.new_stage(); bounded.take(5), bounded.exhausted
    ([(0, 2), (1, 2)], True)
    """

    def __init__(self, n: int, *, passes: int | None, order: Order = "sequential", seed: int = 0) -> None:
        if n <= 0:
            raise ValueError(f"a dataset of {n} samples cannot be replayed")
        self.n = n
        self.passes = passes
        self.order: Order = order
        self.seed = seed
        self.epoch = 0  # the stage count: a worker's chunk of an earlier stage is handed back, not sent
        self.pass_number = 0
        self._pass_in_stage = 0
        self._indices: list[int] = []
        self._position = 0
        self._returned: deque[tuple[int, int]] = deque()
        self.handed_out = 0

    @property
    def exhausted(self) -> bool:
        """True once this stage's last pass has been handed out entirely (never when ``passes`` is None)."""
        return (
            self.passes is not None
            and self._pass_in_stage >= self.passes
            and self._position >= len(self._indices)
            and not self._returned
        )

    def new_stage(self) -> None:
        """A stage begins: the next sample handed out is the first of the stage order (a pass under way ends)."""
        self.epoch += 1
        self._returned.clear()
        self._pass_in_stage = 0
        self._indices, self._position = [], 0

    def _begin_pass(self) -> bool:
        if self.passes is not None and self._pass_in_stage >= self.passes:
            return False
        self.pass_number += 1
        self._pass_in_stage += 1
        order = pass_order(self.n, pass_number=self._pass_in_stage, order=self.order, seed=self.seed)
        self._indices = np.asarray(order).tolist()
        self._position = 0
        return True

    def chunk_size(self, asked: int, workers: int) -> int:
        """How many to hand out for an ask of ``asked``: small enough that every worker gets a fair share."""
        fair = max(1, self.n // (CHUNKS_PER_PASS_PER_WORKER * max(workers, 1)))
        return max(1, min(asked, fair, MAX_CHUNK))

    def take(self, k: int) -> list[tuple[int, int]]:
        """Up to ``k`` samples, never across the end of a pass (a batch of samples stays within one pass)."""
        items: list[tuple[int, int]] = []
        while self._returned and len(items) < k:
            items.append(self._returned.popleft())
        if items:
            self.handed_out += len(items)
            return items
        if self._position >= len(self._indices) and not self._begin_pass():
            return items
        stop = min(self._position + k, len(self._indices))
        items = [(index, self.pass_number) for index in self._indices[self._position : stop]]
        self._position = stop
        self.handed_out += len(items)
        return items

    def give_back(self, items: list[tuple[int, int]], *, epoch: int) -> None:
        """Samples a worker did not send; those of the current stage go out again first."""
        if epoch == self.epoch:
            self._returned.extendleft(reversed(items))
