"""The scenario's ``load:`` section: typed load shapes, their stage plans, and open-model arrival schedules.

Every shape reduces to a list of stages (:class:`StagePlan`): hold ``users`` for ``duration_s``, optionally at an
arrival rate. Locust's LoadTestShape follows the plan on the master; each stage is a load level for the analysis.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

# Strict numbers: YAML reads `users: true` (or `yes`) as a boolean, which pydantic's lax mode would quietly turn
# into 1 user; `users: 2.0` or `users: "4"` is a mistake to point out, not to guess at. A float takes an integer.
Count = Annotated[int, Strict(), Field(gt=0)]
"""A whole number above zero (users, caps): booleans, floats and text are rejected."""
CountOrZero = Annotated[int, Strict(), Field(ge=0)]
"""A whole number, zero allowed."""
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
"""A finite number (an integer is taken as a float); booleans and text are rejected."""
PositiveNumber = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
"""A finite number above zero: seconds, rates."""
Seed = Annotated[int, Strict()]
"""A random seed: any whole number, never a boolean."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UsersLoad(_Strict):
    """A constant number of users (closed model) until ``run_time_s`` or the last pass ends."""

    kind: Literal["users"] = "users"
    users: Count
    spawn_rate: PositiveNumber | None = Field(None, description="Users started per second; default all at once")
    run_time_s: PositiveNumber | None = Field(None, description="Stop after this long; default: until stopped")


class Step(_Strict):
    users: CountOrZero
    duration_s: PositiveNumber
    spawn_rate: PositiveNumber | None = None


class StepsLoad(_Strict):
    """A staircase of user counts, one stage per step."""

    kind: Literal["steps"]
    steps: list[Step] = Field(min_length=1)


class RampLoad(_Strict):
    """From ``from_users`` to ``to_users`` over ``duration_s``, one stage every ``step_every_s`` seconds."""

    kind: Literal["ramp"]
    from_users: CountOrZero = 0
    to_users: Count
    duration_s: PositiveNumber
    step_every_s: PositiveNumber = 10.0
    spawn_rate: PositiveNumber | None = None


class SpikeLoad(_Strict):
    """``baseline_users`` for ``before_s``, ``spike_users`` for ``spike_s``, then the baseline again for ``after_s``."""

    kind: Literal["spike"]
    baseline_users: Count
    spike_users: Count
    before_s: PositiveNumber
    spike_s: PositiveNumber
    after_s: PositiveNumber
    spawn_rate: PositiveNumber | None = Field(None, description="Default: the spike arrives within a second")


class SoakLoad(_Strict):
    """Constant users for a long time, cut into ``window_s`` windows so the analysis can see drift over time."""

    kind: Literal["soak"]
    users: Count
    duration_s: PositiveNumber
    window_s: PositiveNumber = 60.0
    spawn_rate: PositiveNumber | None = None


class RateStep(_Strict):
    rate: PositiveNumber = Field(description="Arrivals per second, across all workers")
    duration_s: PositiveNumber


class RateLoad(_Strict):
    """Open model: arrivals at a target rate whatever the response times; ``max_users`` caps the concurrency.

    Give either ``rate`` and ``duration_s`` or a list of ``steps``. When every user is busy, arrivals wait and the
    wait is recorded (``t_scheduled``), so latency can be measured from the scheduled time as well.
    """

    kind: Literal["rate"]
    rate: PositiveNumber | None = None
    duration_s: PositiveNumber | None = None
    steps: list[RateStep] | None = Field(None, min_length=1)
    arrival: Literal["poisson", "uniform"] = "poisson"
    max_users: Count = Field(description="Concurrency cap: requests in flight at most, across all workers")
    seed: Seed | None = Field(None, description="Seed of the arrival process; default: a fresh one per run")

    @model_validator(mode="after")
    def _rate_or_steps(self) -> RateLoad:
        if self.steps is None and (self.rate is None or self.duration_s is None):
            raise ValueError("expected either 'rate' and 'duration_s', or 'steps' (a list of {rate, duration_s})")
        if self.steps is not None and (self.rate is not None or self.duration_s is not None):
            raise ValueError("expected either 'rate' and 'duration_s', or 'steps', not both")
        return self


class SearchLoad(_Strict):
    """Capacity search: raise the load level by level until an SLO breaks, then bisect; report the highest level
    that meets every SLO of the scenario's ``slo:`` section (quality compared with the first level, and rules)."""

    kind: Literal["search"]
    variable: Literal["users", "rate"] = "users"
    start: PositiveNumber = Field(description="First (baseline) level: users, or arrivals/s")
    step: PositiveNumber | None = Field(None, description="Raise by this much each level ...")
    factor: Number | None = Field(None, gt=1, description="... or multiply by this")
    max: PositiveNumber = Field(description="Never go above this level")
    stage_s: PositiveNumber = Field(15.0, description="How long each level is held before it is judged")
    bisect_steps: CountOrZero = 3
    max_users: Count | None = Field(None, description="Concurrency cap when the variable is the rate")
    arrival: Literal["poisson", "uniform"] = "poisson"
    seed: Seed | None = None
    max_duration_s: PositiveNumber = Field(900.0, description="The search stops after this long, whatever it found")

    @model_validator(mode="after")
    def _consistent(self) -> SearchLoad:
        if (self.step is None) == (self.factor is None):
            raise ValueError("expected exactly one of 'step' (add) and 'factor' (multiply)")
        if self.variable == "rate" and self.max_users is None:
            raise ValueError("a search over the rate needs 'max_users', the concurrency cap")
        if self.start > self.max:
            raise ValueError(f"'start' ({self.start:g}) is above 'max' ({self.max:g})")
        return self


Load = Annotated[
    UsersLoad | StepsLoad | RampLoad | SpikeLoad | SoakLoad | RateLoad | SearchLoad,
    Field(discriminator="kind"),
]
"""Any load shape, chosen by ``load.kind`` (default ``users``)."""


@dataclass(frozen=True)
class StagePlan:
    """One stage: hold ``users`` (reached at ``spawn_rate`` users/s) for ``duration_s`` (None: until stopped);
    with ``target_rps`` the users are a concurrency cap and arrivals come at that rate."""

    users: int
    spawn_rate: float
    duration_s: float | None
    target_rps: float | None = None


def _fast(users: int, previous: int) -> float:
    """A spawn rate that completes the change within about a second."""
    return float(max(abs(users - previous), 1))


def stage_plan(
    load: UsersLoad | StepsLoad | RampLoad | SpikeLoad | SoakLoad | RateLoad | SearchLoad,
) -> list[StagePlan]:
    """The stages of a load section. A missing spawn rate means "all at once" (the change within a second).

    >>> stage_plan(UsersLoad(users=3, run_time_s=10))
    [StagePlan(users=3, spawn_rate=3.0, duration_s=10.0, target_rps=None)]
    >>> [s.users for s in stage_plan(RampLoad(kind="ramp", from_users=2, to_users=10, duration_s=25,
    ...                                       step_every_s=10))]
    [2, 6, 10]
    >>> [(s.users, s.duration_s) for s in stage_plan(SoakLoad(kind="soak", users=5, duration_s=150, window_s=60))]
    [(5, 60.0), (5, 60.0), (5, 30.0)]
    """
    if isinstance(load, UsersLoad):
        return [StagePlan(load.users, float(load.spawn_rate or load.users), load.run_time_s)]
    if isinstance(load, StepsLoad):
        plans, previous = [], 0
        for step in load.steps:
            plans.append(StagePlan(step.users, float(step.spawn_rate or _fast(step.users, previous)), step.duration_s))
            previous = step.users
        return plans
    if isinstance(load, RampLoad):
        n = max(math.ceil(load.duration_s / load.step_every_s), 1)
        plans, previous = [], 0
        for i in range(n):
            users = round(load.from_users + (load.to_users - load.from_users) * (i / (n - 1) if n > 1 else 1.0))
            duration = min(load.step_every_s, load.duration_s - i * load.step_every_s)
            plans.append(StagePlan(users, float(load.spawn_rate or _fast(users, previous)), duration))
            previous = users
        return plans
    if isinstance(load, SpikeLoad):
        up = float(load.spawn_rate or _fast(load.spike_users, load.baseline_users))
        base = float(load.spawn_rate or load.baseline_users)
        return [
            StagePlan(load.baseline_users, base, load.before_s),
            StagePlan(load.spike_users, up, load.spike_s),
            StagePlan(load.baseline_users, up, load.after_s),
        ]
    if isinstance(load, SoakLoad):
        n = max(math.ceil(load.duration_s / load.window_s), 1)
        rate = float(load.spawn_rate or load.users)
        return [StagePlan(load.users, rate, min(load.window_s, load.duration_s - i * load.window_s)) for i in range(n)]
    if isinstance(load, SearchLoad):  # only the first level is known in advance: see CapacitySearch
        return [search_stage(load, load.start)]
    steps = load.steps or [RateStep(rate=load.rate or 0.0, duration_s=load.duration_s or 0.0)]
    return [StagePlan(load.max_users, float(load.max_users), s.duration_s, target_rps=s.rate) for s in steps]


def stage_at(plan: list[StagePlan], elapsed_s: float) -> int | None:
    """Index of the stage running ``elapsed_s`` seconds into the test, or None once the last stage is over.

    >>> plan = [StagePlan(1, 1.0, 5.0), StagePlan(2, 1.0, 5.0)]
    >>> stage_at(plan, 0.0), stage_at(plan, 5.0), stage_at(plan, 10.0)
    (0, 1, None)
    """
    end = 0.0
    for index, stage in enumerate(plan):
        if stage.duration_s is None:
            return index
        end += stage.duration_s
        if elapsed_s < end:
            return index
    return None


def total_duration(plan: list[StagePlan]) -> float | None:
    """Planned length of the test in seconds, or None when it runs until stopped."""
    if any(stage.duration_s is None for stage in plan):
        return None
    return sum(stage.duration_s or 0.0 for stage in plan)


class StageClock:
    """Walks a stage plan so that every stage is held for its full duration, however late it began.

    Locust's ``start()`` blocks while users spawn, so a shape that only looks at the elapsed time can jump over a
    short stage entirely. This clock moves to the next stage only when the current one has lasted its duration
    since it actually began.

    >>> clock = StageClock([StagePlan(1, 1.0, 2.0), StagePlan(2, 1.0, 1.0)])
    >>> clock.stage(0.0), clock.stage(5.0), clock.stage(5.5), clock.stage(6.0)
    (0, 1, 1, None)
    """

    def __init__(self, plan: list[StagePlan]) -> None:
        self.plan = plan
        self.index: int | None = None
        self.began_at = 0.0

    def stage(self, now: float) -> int | None:
        if self.index is None:
            self.index, self.began_at = 0, now
        while self.index is not None:
            duration = self.plan[self.index].duration_s
            if duration is None or now - self.began_at < duration:
                return self.index
            self.began_at = now
            self.index = self.index + 1 if self.index + 1 < len(self.plan) else None
        return None


class ArrivalProcess:
    """Inter-arrival gaps of an open-model load: exponential (Poisson arrivals) or constant (uniform).

    >>> gaps = ArrivalProcess("uniform", seed=1)
    >>> gaps.gap(4.0), gaps.gap(4.0)
    (0.25, 0.25)
    >>> poisson = ArrivalProcess("poisson", seed=1)
    >>> round(sum(poisson.gap(100.0) for _ in range(20000)) / 20000, 4)
    0.01
    """

    def __init__(self, kind: Literal["poisson", "uniform"], *, seed: int | None = None) -> None:
        self.kind = kind
        self._random = random.Random(seed)

    def gap(self, rate: float) -> float:
        """Seconds until the next arrival at ``rate`` arrivals per second."""
        if self.kind == "uniform":
            return 1.0 / rate
        return self._random.expovariate(rate)


def search_stage(load: SearchLoad, value: float) -> StagePlan:
    """The stage that holds one level of a capacity search."""
    if load.variable == "users":
        users = max(round(value), 1)
        return StagePlan(users, float(users), load.stage_s)
    cap = load.max_users or 1
    return StagePlan(cap, float(cap), load.stage_s, target_rps=value)


class CapacitySearch:
    """Which level to try next: raise while every SLO holds, then bisect between the last good and first bad.

    Users are whole numbers, so a users search stops bisecting when the two are adjacent.

    >>> search = CapacitySearch(SearchLoad(kind="search", start=2, step=2, max=20))
    >>> search.next(True), search.next(True), search.next(True), search.next(False), search.next(False)
    (4.0, 6.0, 8.0, 7.0, None)
    >>> search.highest_passing
    6.0
    """

    def __init__(self, load: SearchLoad) -> None:
        self.load = load
        self.current = float(load.start)
        self.tried: list[tuple[float, bool]] = []
        self.highest_passing: float | None = None
        self._lowest_failing: float | None = None
        self._bisections = 0

    def _raise(self, value: float) -> float:
        return value + self.load.step if self.load.step is not None else value * (self.load.factor or 2.0)

    def _midpoint(self, low: float, high: float) -> float | None:
        if self.load.variable == "users":
            mid = float((int(low) + int(high)) // 2)
            return mid if low < mid < high else None
        return (low + high) / 2

    def next(self, passed: bool) -> float | None:
        """Record the verdict on the current level; the next level to try, or None when the search is over."""
        self.tried.append((self.current, passed))
        if passed:
            self.highest_passing = max(self.highest_passing or self.current, self.current)
        else:
            self._lowest_failing = min(self._lowest_failing or self.current, self.current)
        if self._lowest_failing is None:  # still raising
            if self.current >= self.load.max:
                return None
            self.current = min(self._raise(self.current), float(self.load.max))
            return self.current
        if self.highest_passing is None or self._bisections >= self.load.bisect_steps:
            return None
        mid = self._midpoint(self.highest_passing, self._lowest_failing)
        if mid is None:
            return None
        self._bisections += 1
        self.current = mid
        return mid

    def result(self) -> dict[str, object]:
        """The outcome for ``run.json``: the highest level meeting every SLO, and every level tried."""
        return {
            "variable": self.load.variable,
            "highest_passing": self.highest_passing,
            "lowest_failing": self._lowest_failing,
            "levels": [{"value": value, "passed": passed} for value, passed in self.tried],
        }
