# One image for every crmsync service (worker, beat, flower); the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CRMSYNC_LOG_FORMAT=json

RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc make libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY tasks ./tasks
COPY mappings ./mappings
RUN pip install . && useradd --create-home --uid 10001 crmsync

USER crmsync
# 9808: `crmsync worker --metrics-port 9808` (Prometheus); 5555: `crmsync flower`.
EXPOSE 9808 5555
ENTRYPOINT ["crmsync"]
CMD ["worker"]
