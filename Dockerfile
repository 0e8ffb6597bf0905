# syntax=docker/dockerfile:1
# One image for every TeamsFirewall service. The Deployment chooses the service:
#   python -m services.interceptor | services.resolver | services.decider | services.audit
# Build:  docker build -t registry.example/teamsfirewall:0.1.0 .
# The base is pinned to a patch release; CI should pin it further by digest
# (FROM python:3.12.12-slim-bookworm@sha256:...) and let a bot propose updates.

ARG PYTHON_IMAGE=python:3.12.12-slim-bookworm

# --- build: a virtual environment with the pinned dependencies and the project -------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Two environments: /opt/build holds the build backend and never reaches the runtime.
COPY deploy/docker/build-constraints.txt /src/build-constraints.txt
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --only-binary=:all: -r /src/build-constraints.txt \
    && python -m venv /opt/tfw

# Dependencies first, from the lock file only: this layer is reused until it changes.
COPY deploy/docker/requirements.lock /src/requirements.lock
RUN /opt/tfw/bin/pip install --no-deps --only-binary=:all: -r /src/requirements.lock

COPY pyproject.toml README.md LICENSE /src/
COPY services /src/services
COPY tfw /src/tfw
COPY deploy/nats/bootstrap.py /opt/tfw/share/teamsfirewall/bootstrap.py
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /src/dist . \
    && /opt/tfw/bin/pip install --no-deps /src/dist/*.whl \
    && /opt/tfw/bin/pip check \
    && /opt/tfw/bin/python -m compileall -q /opt/tfw

# --- runtime: no compilers, no pip cache, a fixed non-root user ------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="teamsfirewall" \
      org.opencontainers.image.description="Ethical firewall for Microsoft Teams" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"

RUN groupadd --system --gid 10001 tfw \
    && useradd --system --uid 10001 --gid tfw --home-dir /nonexistent \
       --no-create-home --shell /usr/sbin/nologin tfw

COPY --from=build /opt/tfw /opt/tfw

# The root filesystem is read-only in Kubernetes: byte code is compiled at build time,
# the mitmproxy state lives in TFW_CONFDIR (a volume) and /tmp is a volume.
ENV PATH=/opt/tfw/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TFW_ENVIRONMENT=production \
    TFW_HTTP_HOST=0.0.0.0 \
    TFW_HTTP_PORT=9090 \
    TFW_LOG_FORMAT=json \
    TFW_CONFDIR=/var/lib/teamsfirewall/mitmproxy

WORKDIR /opt/tfw
USER 10001:10001

# 8080: the interceptor's proxy; 9090: /healthz, /readyz, /metrics; 8000: the audit API.
EXPOSE 8080 9090 8000

# Kubernetes probes /healthz and /readyz itself; HEALTHCHECK is for plain Docker.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:9090/healthz', timeout=2).status != 200)"]

CMD ["python", "-m", "services.interceptor"]
