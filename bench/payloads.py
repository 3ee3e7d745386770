"""What both baseline locustfiles send: the benchmark scenario's request path and every sample's encoded body."""

import os

from loadgrade.scenario import load_scenario

SCENARIO = load_scenario(os.environ["BENCH_SCENARIO"])
BODIES = [SCENARIO.protocol.build_body(SCENARIO.data().sample(i)) for i in range(len(SCENARIO.data()))]
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
