"""The master's account of each worker: rows received, requests Locust was told about, and who left how.

Rows travel every half second, Locust's statistics every three, so a worker that dies without warning leaves
both counts behind at different points. The ledger keeps them apart so ``run.json`` can say how large the gap is
instead of letting the totals silently disagree.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

RATE_WINDOW_S = 2.0


@dataclass
class WorkerAccount:
    client_id: str
    worker_index: int
    rows: int = 0
    requests: int = 0  # as many as rows, unless requests carry several samples (batching)
    reported: int = 0
    last_rows_at: float | None = None
    left: Literal["graceful", "lost"] | None = None
    left_at: float | None = None
    _recent: deque[tuple[float, int]] = field(default_factory=deque, repr=False)

    def rate(self) -> float:
        """Requests per second over the last few seconds of arrivals."""
        if not self._recent:
            return 0.0
        return sum(n for _, n in self._recent) / RATE_WINDOW_S


class WorkerLedger:
    """Per-worker counts on the master.

    >>> ledger = WorkerLedger()
    >>> ledger.join("w1", 0)
    >>> ledger.rows_arrived("w1", 100, t=10.0); ledger.rows_arrived("w1", 100, t=10.5)
    >>> ledger.stats_reported("w1", 150)
    >>> ledger.mark_lost("w1", t=14.0)
    >>> report = ledger.departures()[0]
    >>> report["rows_received"], report["locust_requests_reported"], report["unrecorded_estimate"]
    (200, 150, 50)
    """

    def __init__(self, ship_interval_s: float = 0.5) -> None:
        self.ship_interval_s = ship_interval_s
        self.accounts: dict[str, WorkerAccount] = {}

    def join(self, client_id: str, worker_index: int) -> None:
        self.accounts.setdefault(client_id, WorkerAccount(client_id, worker_index))

    def _account(self, client_id: str) -> WorkerAccount:
        if client_id not in self.accounts:
            self.accounts[client_id] = WorkerAccount(client_id, -1)
        return self.accounts[client_id]

    def rows_arrived(self, client_id: str, n: int, *, t: float, requests: int | None = None) -> None:
        account = self._account(client_id)
        account.rows += n
        account.requests += n if requests is None else requests
        account.last_rows_at = t
        account._recent.append((t, n if requests is None else requests))
        while account._recent and account._recent[0][0] < t - RATE_WINDOW_S:
            account._recent.popleft()

    def stats_reported(self, client_id: str, n: int) -> None:
        self._account(client_id).reported += n

    def mark_graceful(self, client_id: str, *, t: float | None = None) -> None:
        account = self._account(client_id)
        account.left, account.left_at = "graceful", t

    def mark_lost(self, client_id: str, *, t: float) -> None:
        account = self._account(client_id)
        if account.left is None:
            account.left, account.left_at = "lost", t

    def active(self) -> set[str]:
        return {cid for cid, account in self.accounts.items() if account.left is None}

    def unrecorded_estimate(self, account: WorkerAccount) -> int:
        """Requests a lost worker made that never reached the master as rows.

        Those Locust was told about but whose rows never came, plus the rows of at most one shipping interval
        that were still in the worker's buffer when it died (at its recent rate).
        """
        if account.left != "lost":
            return 0
        return max(account.reported - account.requests, 0) + math.ceil(account.rate() * self.ship_interval_s)

    def departures(self) -> list[dict[str, Any]]:
        """Workers that left during the run, for ``run.json``."""
        return [
            {
                "client_id": account.client_id,
                "worker_index": account.worker_index,
                "how": account.left,
                "at": account.left_at,
                "rows_received": account.rows,
                "requests_received": account.requests,
                "locust_requests_reported": account.reported,
                "unrecorded_estimate": self.unrecorded_estimate(account),
            }
            for account in self.accounts.values()
            if account.left is not None
        ]
