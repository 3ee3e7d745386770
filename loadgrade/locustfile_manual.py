"""The replaying user without the scenario's load shape: users set by hand (web UI, or ``-u``/``-r``/``-t``).

    loadgrade run scenarios/digits.yaml --manual --web    # the same as:
    locust -f "$(python -c 'import loadgrade.locustfile_manual as m; print(m.__file__)')" \\
        --scenario scenarios/digits.yaml

The scenario's ``load:`` section is ignored. Importing the user alone leaves :class:`ScenarioShape` out, so Locust
finds no shape here.
"""

from loadgrade.locustfile import ModelUser

__all__ = ["ModelUser"]
