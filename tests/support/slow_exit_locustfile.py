"""loadgrade's locustfile with an exit that yields for 1.5 s after Locust has closed its ``--csv`` files.

Such an exit lets any greenlet still writing those files run once more (tests/e2e/test_csv_exit.py).
"""

import atexit

import gevent

from loadgrade.locustfile import ModelUser, ScenarioShape

__all__ = ["ModelUser", "ScenarioShape"]

atexit.register(gevent.sleep, 1.5)
