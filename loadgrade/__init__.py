"""loadgrade: how much load can a model endpoint take before its answers get worse, not just slower?

The core package is plain, typed Python with no Locust globals: scenario files (:mod:`loadgrade.scenario`),
labelled datasets (:mod:`loadgrade.dataset`) and the hand-out of their samples (:mod:`loadgrade.dispenser`),
endpoint protocols (:mod:`loadgrade.protocols`), the per-request record schema and writer
(:mod:`loadgrade.recording`), load shapes (:mod:`loadgrade.shapes`), the pre-flight and the SLO gate. The two
Locust roles are the master's run (:mod:`loadgrade.master`) and the worker's replay (:mod:`loadgrade.worker`),
wired to Locust's events by :mod:`loadgrade.locust_plugin`.
"""

__version__ = "0.1.0"
