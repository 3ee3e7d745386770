"""The second baseline for the overhead benchmark: loadgrade's own HTTP client, recording nothing.

Each user sends the same pre-encoded payloads as ``bare_locustfile.py`` through :class:`loadgrade.client.EndpointClient`
and reports every request to Locust's ``request`` event, as the replay does; no hand-out of samples, no reply
parsing, no records. Against it, loadgrade's full user shows what the recording itself costs.
"""

from locust import User, constant, task

from bench.payloads import BODIES, HEADERS, SCENARIO
from loadgrade.client import EndpointClient


class ClientOnlyUser(User):
    wait_time = constant(0)
    position = 0

    def __init__(self, environment):
        super().__init__(environment)
        self.endpoint = EndpointClient(self.host + SCENARIO.request_path, method="POST", headers=HEADERS, timeout_s=10)
        self.fire = environment.events.request.fire

    @task
    def predict(self):
        body = BODIES[ClientOnlyUser.position % len(BODIES)]
        ClientOnlyUser.position += 1
        sent = self.endpoint.send(body)
        self.fire(
            request_type="POST",
            name="predict",
            response_time=sent.response_time_ms,
            response_length=len(sent.content or b""),
            exception=sent.exception,
            context={},
            response=None,
            start_time=sent.start_time,
            url=self.endpoint.url,
        )

    def on_stop(self):
        self.endpoint.close()
