"""Load shapes from the scenario's ``load:`` section, as pure stage plans a Locust LoadTestShape can follow."""

from __future__ import annotations

from dataclasses import dataclass

from loadgrade.scenario import StepsLoad, UsersLoad


@dataclass(frozen=True)
class StagePlan:
    """One stage: hold ``users`` (reached at ``spawn_rate`` users/s) for ``duration_s`` (None: until stopped)."""

    users: int
    spawn_rate: float
    duration_s: float | None


def stage_plan(load: UsersLoad | StepsLoad) -> list[StagePlan]:
    """The stages of a load section. A missing spawn rate means "all at once" (the whole step within a second).

    >>> stage_plan(UsersLoad(users=3, run_time_s=10))
    [StagePlan(users=3, spawn_rate=3.0, duration_s=10.0)]
    """
    if isinstance(load, UsersLoad):
        return [StagePlan(load.users, float(load.spawn_rate or load.users), load.run_time_s)]
    plans, previous = [], 0
    for step in load.steps:
        rate = step.spawn_rate or max(abs(step.users - previous), 1)
        plans.append(StagePlan(step.users, float(rate), step.duration_s))
        previous = step.users
    return plans


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
