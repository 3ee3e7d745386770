"""The baseline for the overhead benchmark: a bare FastHttpUser POSTing the same payloads, recording nothing."""

from locust import FastHttpUser, constant, task

import os

from loadgrade.scenario import load_scenario

_scenario = load_scenario(os.environ["BENCH_SCENARIO"])
_bodies = [_scenario.protocol.build_body(_scenario.data().sample(i)) for i in range(len(_scenario.data()))]
_headers = {"Content-Type": "application/json", "Accept": "application/json"}


class BareUser(FastHttpUser):
    wait_time = constant(0)
    position = 0

    @task
    def predict(self):
        body = _bodies[BareUser.position % len(_bodies)]
        BareUser.position += 1
        self.client.post(_scenario.request_path, data=body, headers=_headers, name="predict")
