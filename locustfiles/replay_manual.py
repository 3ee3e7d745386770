"""Replay a scenario's labelled dataset with the load set by hand (web UI, or ``-u``/``-r``/``-t``).

    locust -f locustfiles/replay_manual.py --scenario scenarios/digits.yaml

The same user as ``replay.py`` without the scenario's load shape: the scenario's ``load:`` section is ignored
(``loadgrade run SCENARIO --manual``).
"""

from loadgrade.locustfile_manual import ModelUser

__all__ = ["ModelUser"]
