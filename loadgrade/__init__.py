"""loadgrade: how much load can a model endpoint take before its answers get worse, not just slower?

The core package is plain, typed Python with no Locust globals: scenario files (:mod:`loadgrade.scenario`),
labelled datasets and their partitioning (:mod:`loadgrade.dataset`), endpoint protocols
(:mod:`loadgrade.protocols`), the per-request record schema and writer (:mod:`loadgrade.recording`) and
load shapes (:mod:`loadgrade.shapes`). The Locust glue lives in :mod:`loadgrade.locust_plugin`.
"""

__version__ = "0.1.0"
