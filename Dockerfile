# One image for both roles: the bot (default command) and the Celery GPU workers
# (`python -m engine worker`). The CUDA runtime base gives the workers the driver libraries'
# user-space side; torch brings its own CUDA and cuDNN wheels.
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/app/.venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first, so code changes do not reinstall torch.
COPY pyproject.toml README.md ./
RUN python3 -m venv .venv \
    && .venv/bin/pip install --upgrade pip \
    && mkdir -p bot engine \
    && touch bot/__init__.py engine/__init__.py \
    && .venv/bin/pip install .
COPY alembic.ini ./
COPY migrations ./migrations
COPY engine ./engine
COPY bot ./bot
RUN .venv/bin/pip install --no-deps .

# Paintings, style statistics, the SQLite database (if used) and results live here.
VOLUME /app/data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')" || exit 1
CMD ["python", "-m", "bot"]
