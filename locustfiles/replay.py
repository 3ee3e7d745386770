"""Replay a scenario's labelled dataset against its model endpoint, with the load the scenario describes.

    locust -f locustfiles/replay.py --scenario scenarios/digits.yaml --headless
    locust -f locustfiles/replay.py --scenario scenarios/digits.yaml --headless --processes 2

The scenario's ``load:`` section drives the user count (a load shape). To set users by hand in the web UI or with
``-u/-r/-t`` instead, use ``locustfiles/replay_manual.py``.
"""

from locust import User, constant, task

from loadgrade.locust_plugin import ScenarioShape, controller_of

__all__ = ["ModelUser", "ScenarioShape"]


class ModelUser(User):
    """Sends one sample per task over its own keep-alive connection (``self.endpoint``) and records the reply.

    All logic lives in loadgrade; requests reach Locust's statistics through its ``request`` event as usual.
    """

    wait_time = constant(0)

    def __init__(self, environment):
        super().__init__(environment)
        self.loadgrade = controller_of(environment)
        self.loadgrade.configure_user(self)

    @task
    def predict(self):
        self.loadgrade.replay_one(self)

    def on_stop(self):
        self.endpoint.close()
