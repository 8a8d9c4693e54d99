# syntax=docker/dockerfile:1
# The registration worker. `docker run IMAGE` runs `regworker run`; any other sub-command
# works the same way, e.g. `docker run IMAGE emulator --host 0.0.0.0`.
# Settings come from REGWORKER_* variables, AWS endpoints and credentials from the
# standard AWS_* variables (see README.md and docker-compose.yml).

# --- builder: install the package and its runtime dependencies into a venv --------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the wheel is built from: tests, dev tools and caches stay out (.dockerignore).
COPY pyproject.toml README.md ./
COPY worker ./worker
# A regular (non-editable) install without extras: no [dev], no [local] in the image.
RUN /opt/venv/bin/pip install .

# --- runtime: the venv and nothing else -------------------------------------------------
FROM python:3.11-slim AS runtime
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
# What this check can honestly tell: PID 1 is regworker and is not stopped (SIGSTOP) or a
# zombie. It cannot tell a wedged worker from a working one. A worker whose receive loop
# dies exits instead of lingering (and the restart policy starts a new one), so "running"
# is close to "alive"; a heartbeat file written by the receive loop would make this a
# real liveness check. `python`, not pgrep: the slim image has no procps.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys; argv = open('/proc/1/cmdline', 'rb').read().split(b'\\0'); state = open('/proc/1/stat').read().rsplit(')', 1)[1].split()[0]; sys.exit(0 if state not in 'TtZ' and any(arg.rsplit(b'/', 1)[-1] == b'regworker' for arg in argv) else 1)"]
ENTRYPOINT ["regworker"]
CMD ["run"]
