# Shoal: the OpenAI-compatible gateway and local llama.cpp engine, one image for both roles.
#   docker build -t shoal:local .
#   docker run -p 8000:8000 -e SHOAL_API_KEYS=... -v shoal-models:/var/cache/shoal/models shoal:local
# Probes: GET /health (liveness), GET /ready (readiness: 503 while a model is unavailable or while draining).
FROM python:3.11-slim-bookworm

# xllamacpp's prebuilt wheel links against libgomp (OpenMP) and libstdc++, which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libstdc++6 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/shoal
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /opt/shoal/src

# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it without resolving names.
RUN groupadd --system --gid 10001 shoal \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/shoal --shell /usr/sbin/nologin shoal \
    && mkdir -p /var/lib/shoal /var/cache/shoal/models \
    && chown -R 10001:10001 /var/lib/shoal /var/cache/shoal \
    && chmod 0700 /var/lib/shoal

# SHOAL_HOME holds the SQLite database (when no PostgreSQL is given) and the node id.
# Packaged models are fetched once into SHOAL_MODEL_CACHE: keep it on a volume.
ENV HOME=/var/lib/shoal \
    SHOAL_HOME=/var/lib/shoal \
    SHOAL_MODEL_CACHE=/var/cache/shoal/models
VOLUME ["/var/cache/shoal/models"]

USER 10001:10001
WORKDIR /var/lib/shoal
EXPOSE 8000

# On SIGTERM Shoal drains: /ready turns 503, requests in flight get up to SHOAL_DRAIN_SECONDS (default 30).
STOPSIGNAL SIGTERM
# Loading a model can take a while on first start (the fetch into the cache): a long start period.
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]

ENTRYPOINT ["shoal"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
