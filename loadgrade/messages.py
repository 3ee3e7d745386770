"""The messages the master and the workers of one run exchange over Locust's messaging, and their pace."""

from __future__ import annotations

MSG_HELLO = "loadgrade_hello"  # worker → master, at start-up: who I am (so a worker of another run is refused)
MSG_REFUSE = "loadgrade_refuse"  # master → worker: you belong to another run; the worker quits
MSG_NEED = "loadgrade_need"  # worker → master: my users need about this many more samples
MSG_CHUNK = "loadgrade_chunk"  # master → worker: samples of the current stage (or none: the stage is exhausted)
MSG_RESET = "loadgrade_reset"  # master → workers: a new stage began; hand back what you hold of the last one
MSG_RETURN = "loadgrade_return"  # worker → master: samples handed out that will not be sent
MSG_ROWS = "loadgrade_rows"  # worker → master: a batch of records
MSG_DRAIN = "loadgrade_drain"  # master → worker: stop your users and ship everything now
MSG_DRAINED = "loadgrade_drained"  # worker → master: done, nothing more will come
MSG_LEAVING = "loadgrade_leaving"  # worker → master: I am shutting down and have shipped everything
MSG_RATE = "loadgrade_rate"  # master → worker: open model, your share of the arrival rate from now on

SHIP_INTERVAL_S = 0.5  # rows reach the master at least this often ...
SHIP_BATCH_ROWS = 2000  # ... or as soon as this many are buffered
# A worker that has heard nothing from its master for this long stops its users and quits (Locust's own default
# is 60 s, long enough for an orphaned worker to send thousands of unrecorded requests). The master sends a
# heartbeat every second; its longest pause is judging a capacity-search level (about a second on 100 k rows).
MASTER_SILENCE_S = 6
