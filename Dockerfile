# loadgrade: one image for every role. The entrypoint is Locust with loadgrade's locustfile, so the arguments
# choose the role:
#   docker run IMAGE --master --headless --scenario /path/scenario.yaml --expect-workers 2   master
#   docker run IMAGE --worker --master-host MASTER                                          worker
#   docker run --entrypoint loadgrade IMAGE check /results/runs/RUN                         analysis gate
# (python -m analysis check ... works too, from any folder: the deploy/ manifests run it so). The installed package
# is the only copy of loadgrade in the image; /app keeps the repository's entry points to it.
# Kubernetes manifests using it: deploy/ (see docs/cluster.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MPLBACKEND=Agg \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies first, read from pyproject.toml's [project] dependencies (their one list): this layer is rebuilt only
# when pyproject.toml changes (every one ships as a wheel for linux x86_64 and arm64, so no compiler is needed).
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/dependencies.txt \
    && pip install -r /tmp/dependencies.txt \
    && rm /tmp/dependencies.txt

# The package (with the loadgrade command), built by hatchling, which leaves no build files behind; its source is
# removed so that nothing in /app shadows the installed copy.
COPY README.md ./
COPY loadgrade ./loadgrade
RUN pip install --no-deps . && rm -rf loadgrade

# The repository's entry points: locustfiles/replay.py (the entrypoint), the analysis alias (python -m analysis,
# importable through PYTHONPATH) and the example scenarios.
COPY analysis ./analysis
COPY locustfiles ./locustfiles
COPY scenarios ./scenarios

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it; /results is where run directories go.
RUN groupadd --gid 10001 loadgrade \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/loadgrade --shell /usr/sbin/nologin loadgrade \
    && mkdir /results \
    && chown 10001:10001 /results
USER 10001:10001

# 5557: workers connect to the master; 8089: Locust's web UI.
EXPOSE 5557 8089
ENTRYPOINT ["locust", "-f", "/app/locustfiles/replay.py"]
CMD ["--help"]
