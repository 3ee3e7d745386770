"""loadgrade: how much load can a model endpoint take before its answers get worse, not just slower?

The core package is plain, typed Python with no Locust globals: scenario files (:mod:`loadgrade.scenario`),
labelled datasets (:mod:`loadgrade.dataset`) and the hand-out of their samples (:mod:`loadgrade.dispenser`),
endpoint protocols (:mod:`loadgrade.protocols`), the per-request record schema and writer
(:mod:`loadgrade.recording`), load shapes (:mod:`loadgrade.shapes`), the pre-flight and the SLO gate. The two
Locust roles are the master's run (:mod:`loadgrade.master`) and the worker's replay (:mod:`loadgrade.worker`),
wired to Locust's events by :mod:`loadgrade.locust_plugin`; the user class Locust runs is
:mod:`loadgrade.locustfile`'s. The ``loadgrade`` command is :mod:`loadgrade.cli`; the analysis of a run is
:mod:`loadgrade.analysis`, and :mod:`loadgrade.servers.reference` is the reference model server.
"""

# The one place the version is written: pyproject.toml reads it from here when the package is built
# ([tool.hatch.version]), so a source tree and an installed package always agree.
__version__ = "0.1.0"
