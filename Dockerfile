# TAflow's API and worker, one image: `taflow api` (the default) or `taflow worker`; the one-shot
# `taflow migrate` / `taflow seed` too. Settings come from TAFLOW_* variables (taflow/settings.py);
# docker-compose.yml sets them for the one-host production topology (docs/operations.md).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/taflow
WORKDIR /src
COPY pyproject.toml ./
COPY taflow ./taflow
RUN /opt/taflow/bin/pip install .

FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /app --uid 10001 taflow
COPY --from=build /opt/taflow /opt/taflow
ENV PATH=/opt/taflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TAFLOW_DATA_DIR=/app/data \
    TAFLOW_API_HOST=0.0.0.0 \
    TAFLOW_API_PORT=8000 \
    TAFLOW_WORKER_METRICS_HOST=0.0.0.0 \
    TAFLOW_WORKER_METRICS_PORT=9464 \
    TAFLOW_LOG_FORMAT=json
WORKDIR /app
USER taflow
# 8000: the API (and its /metrics); 9464: the worker's /metrics (Temporal SDK + business metrics)
EXPOSE 8000 9464
ENTRYPOINT ["taflow"]
CMD ["api"]
