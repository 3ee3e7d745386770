"""Replay a scenario's labelled dataset with the load set by hand (web UI, or ``-u``/``-r``/``-t``).

    locust -f locustfiles/replay_manual.py --scenario scenarios/digits.yaml

Same user as ``replay.py`` without the scenario's load shape: the scenario's ``load:`` section is ignored.
"""

from locust import FastHttpUser, constant, task

from loadgrade.locust_plugin import controller_of

__all__ = ["ModelUser"]


class ModelUser(FastHttpUser):
    """Sends one sample per task and records the reply; all logic lives in loadgrade."""

    wait_time = constant(0)

    def __init__(self, environment):
        self.loadgrade = controller_of(environment)
        self.loadgrade.configure_user(self)
        super().__init__(environment)

    @task
    def predict(self):
        self.loadgrade.replay_one(self)
