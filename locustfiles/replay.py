"""Replay a scenario's labelled dataset against its model endpoint, with the load the scenario describes.

    locust -f locustfiles/replay.py --scenario scenarios/digits.yaml --headless
    locust -f locustfiles/replay.py --scenario scenarios/digits.yaml --headless --processes 2

The same as ``loadgrade run scenarios/digits.yaml``: the user and the shape live in :mod:`loadgrade.locustfile`,
this file is the repository's entry point to them. To set users by hand in the web UI or with ``-u/-r/-t`` instead,
use ``locustfiles/replay_manual.py``.
"""

from loadgrade.locustfile import ModelUser, ScenarioShape

__all__ = ["ModelUser", "ScenarioShape"]
