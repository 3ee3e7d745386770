"""Replay a scenario's labelled dataset against its model endpoint, with the load the scenario describes.

    locust -f locustfiles/replay.py --scenario scenarios/digits.yaml --headless
    locust -f locustfiles/replay.py --scenario scenarios/digits.yaml --headless --processes 2

The scenario's ``load:`` section drives the user count (a load shape). To set users by hand in the web UI or with
``-u/-r/-t`` instead, use ``locustfiles/replay_manual.py``.
"""

from locust import FastHttpUser, constant, task

from loadgrade.locust_plugin import ScenarioShape, controller_of

__all__ = ["ModelUser", "ScenarioShape"]


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
