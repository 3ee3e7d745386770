# loadgrade: one image for every role. The entrypoint is Locust with loadgrade's locustfile, so the arguments
# choose the role:
#   docker run IMAGE --master --headless --scenario /path/scenario.yaml --expect-workers 2   master
#   docker run IMAGE --worker --master-host MASTER                                          worker
#   docker run --entrypoint python IMAGE -m analysis check /results/runs/RUN                 analysis gate
# Kubernetes manifests using it: deploy/ (see docs/cluster.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MPLBACKEND=Agg

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes (every one ships as a wheel for
# linux x86_64 and arm64, so no compiler is needed).
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY pyproject.toml README.md ./
COPY loadgrade ./loadgrade
COPY analysis ./analysis
COPY locustfiles ./locustfiles
COPY scenarios ./scenarios
RUN pip install --no-deps . && rm -rf build ./*.egg-info

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
