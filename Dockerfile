# One lienthong node: `lienthong serve --config FILE` (docker-compose.yml runs the sandbox
# tree with it; docs/containers.md). The project and its runtime dependencies only, on the
# Python the test suite runs on.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LIENTHONG_HEALTH_URL=http://127.0.0.1:8480/healthz

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exchange/ exchange/
COPY adapters/ adapters/
COPY schemas/ schemas/
COPY config/ config/
RUN pip install . && rm -rf /src

# a user of its own; the node files and the state it keeps belong to it
RUN groupadd --system --gid 10001 lienthong \
    && useradd --system --uid 10001 --gid lienthong --home-dir /var/lib/lienthong \
        --shell /usr/sbin/nologin lienthong \
    && mkdir -p /etc/lienthong /var/lib/lienthong \
    && chown lienthong:lienthong /etc/lienthong /var/lib/lienthong

USER lienthong:lienthong
WORKDIR /var/lib/lienthong
VOLUME ["/var/lib/lienthong"]

# the HTTP face ([http] listen in the node file): REST API, SDK facade, /healthz, console
EXPOSE 8480

# the process lives and answers (docs/operations.md); python, since slim has no curl
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['LIENTHONG_HEALTH_URL'], timeout=4)"]

ENTRYPOINT ["lienthong"]
CMD ["serve", "--config", "/etc/lienthong/node.toml"]
