"""The Locust user that replays a scenario, and the scenario's load shape: what ``loadgrade run`` starts.

    loadgrade run scenarios/digits.yaml                  # the same as:
    locust -f "$(python -c 'import loadgrade.locustfile as m; print(m.__file__)')" --scenario scenarios/digits.yaml \\
        --headless

Shipped inside the package so that an installed loadgrade needs no clone to run; the repository's
``locustfiles/replay.py`` imports both classes from here. The scenario's ``load:`` section drives the user count (a
load shape); :mod:`loadgrade.locustfile_manual` leaves the shape out, for users set by hand.
"""

from locust import User, constant, task

from typing import Any

from loadgrade.client import EndpointClient
from loadgrade.locust_plugin import ScenarioShape, controller_of

__all__ = ["ModelUser", "ScenarioShape"]


class ModelUser(User):
    """Sends one sample per task over its own keep-alive connection (``self.endpoint``) and records the reply.

    All logic lives in loadgrade; requests reach Locust's statistics through its ``request`` event as usual.
    """

    wait_time = constant(0)
    endpoint: EndpointClient  # given by the controller when the user starts

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.loadgrade = controller_of(environment)
        self.loadgrade.configure_user(self)

    @task
    def predict(self) -> None:
        self.loadgrade.replay_one(self)

    def on_stop(self) -> None:
        self.endpoint.close()
