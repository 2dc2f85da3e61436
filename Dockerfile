# syntax=docker/dockerfile:1
#
# One image for the three Baton services; the command names the service module:
#
#   docker build -t baton:dev .
#   docker run --rm -p 8000:8000 baton:dev                    # services.intake (default)
#   docker run --rm -p 8001:8001 baton:dev services.routing
#   docker run --rm -p 8002:8002 baton:dev services.followup
#
# Configuration is by environment only (BATON_*, see the README). The image runs as the
# non-root user 10001 and needs no shell at run time (every command is exec form), so it
# works with a read-only root filesystem: only BATON_DATA_DIR (the embedded SQLite store,
# unused with MongoDB) must be writable.

# --- build: a virtual environment with the pinned runtime dependencies and Baton itself ---
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# Dependencies first, so this layer is reused until pyproject.toml or the lock change.
# Only the runtime dependencies of pyproject.toml are installed (not the dev extras), at
# the versions requirements.lock pins (it is used as a constraints file).
COPY pyproject.toml requirements.lock ./
RUN python -m venv /opt/baton \
 && python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(deps))" \
      > /tmp/runtime-requirements.txt \
 && /opt/baton/bin/pip install --constraint requirements.lock --requirement /tmp/runtime-requirements.txt

# Then the project (a regular, non-editable install, with its package data).
COPY README.md ./
COPY contracts ./contracts
COPY runtime ./runtime
COPY services ./services
RUN /opt/baton/bin/pip install --no-deps . \
 && /opt/baton/bin/pip check \
 && /opt/baton/bin/python -c "import services.intake.app, services.routing.app, services.followup.app"

# --- runtime: the slim base, the virtual environment, a fixed non-root user ---
FROM python:3.11-slim AS runtime

RUN groupadd --system --gid 10001 baton \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin baton \
 && mkdir -p /var/lib/baton \
 && chown 10001:10001 /var/lib/baton

COPY --from=build /opt/baton /opt/baton

ENV PATH="/opt/baton/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BATON_HOST=0.0.0.0 \
    BATON_DATA_DIR=/var/lib/baton

WORKDIR /var/lib/baton
USER 10001:10001
EXPOSE 8000 8001 8002

# Liveness for plain `docker run`: whichever of the three service ports this container
# serves answers GET /healthz. docker-compose.yml and Kubernetes define their own checks
# (readiness on /readyz).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request\ndef ok(port):\n    try:\n        return urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200\n    except OSError:\n        return False\nports = [os.environ.get(f'BATON_{s}_PORT', d) for s, d in (('INTAKE', '8000'), ('ROUTING', '8001'), ('FOLLOWUP', '8002'))]\nsys.exit(0 if any(ok(p) for p in ports) else 1)"]

# `docker run IMAGE services.routing` replaces CMD: python -m services.routing.
ENTRYPOINT ["python", "-m"]
CMD ["services.intake"]
