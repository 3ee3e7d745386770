"""The baseline for the overhead benchmark: a bare FastHttpUser POSTing the same payloads, recording nothing."""

from locust import FastHttpUser, constant, task

from bench.payloads import BODIES, HEADERS, SCENARIO


class BareUser(FastHttpUser):
    wait_time = constant(0)
    position = 0

    @task
    def predict(self):
        body = BODIES[BareUser.position % len(BODIES)]
        BareUser.position += 1
        self.client.post(SCENARIO.request_path, data=body, headers=HEADERS, name="predict")
