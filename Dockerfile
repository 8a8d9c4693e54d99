# syntax=docker/dockerfile:1
# The registration worker. `docker run IMAGE` runs `regworker run`; any other sub-command
# works the same way, e.g. `docker run IMAGE emulator --host 0.0.0.0`.
# Settings come from REGWORKER_* variables, AWS endpoints and credentials from the
# standard AWS_* variables (see README.md and docker-compose.yml).

# Both stages start from python:3.11-slim pinned by digest: the multi-platform index as
# published on 2026-08-05 (Python 3.11.15, Debian trixie), so a rebuild starts from the
# same bytes, not from whatever the tag points at that day. To move on, put the current
# digest in both FROM lines (`docker buildx imagetools inspect python:3.11-slim`).

# --- builder: the locked dependencies, then the package, into a venv --------------------
FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies from the lock only (`make lock` writes it from pyproject.toml): one
# version each, every file checked against its hash, nothing resolved here. A layer of
# its own, rebuilt only when the lock changes.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
# Only what the wheel is built from: tests, dev tools and caches stay out (.dockerignore).
COPY pyproject.toml README.md ./
COPY worker ./worker
# The package itself, without extras (no [dev], no [local]) and without dependencies
# (all came from the lock); no build isolation, so it is built with the locked setuptools
# and wheel rather than unpinned ones fetched for the build. `pip check` fails the build
# if the lock lacks anything the package or a dependency requires.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip check

# --- runtime: the venv and nothing else -------------------------------------------------
FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A numeric, unprivileged user. /config is where `regworker provision --output` writes in
# docker-compose.yml; a named volume mounted there takes this ownership when created.
RUN groupadd --system --gid 10001 regworker \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin regworker \
 && install -d -o 10001 -g 10001 /config
# Same path as in the builder: the venv's scripts name /opt/venv/bin/python.
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
# Liveness from the worker itself: /healthz answers 503 when the event loop or the receive
# loop has stalled (and nothing at all when the process is stopped). urlopen raises on a
# 503 or a refused connection, so python exits 1. `python`, not curl: the slim image has
# none. With REGWORKER_HTTP_PORT=0 there is no endpoint: run the container with
# --no-healthcheck then. Other commands of this image (emulator) bring their own check.
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('REGWORKER_HTTP_PORT', '8080') + '/healthz', timeout=4)"]
ENTRYPOINT ["regworker"]
CMD ["run"]
