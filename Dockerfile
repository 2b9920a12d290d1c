# ehub image for the multi-host deployment (docker-compose.yml): Airflow 3 plus
# the hub's packages, installed from the lock file. No keys or secrets inside
# (.dockerignore keeps var/ — the dev PKI — and out/ out of the build context).
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 AIRFLOW_HOME=/opt/airflow
RUN apt-get update && apt-get install -y --no-install-recommends curl poppler-utils \
       fonts-arphic-gbsn00lp softhsm2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ehub
COPY requirements-deploy.lock pyproject.toml README.md ./
# requirements-deploy.lock: requirements.lock (same pins) plus the deployment-only
# Celery executor provider (workers, Redis broker): `make lock` writes both.
RUN pip install --no-cache-dir "uv==0.13.9" \
    && uv pip install --system --no-cache -r requirements-deploy.lock
COPY . .
RUN uv pip install --system --no-cache --no-deps -e . \
    && mkdir -p /var/lib/ehub /opt/airflow \
    && chown 50000:0 /var/lib/ehub /opt/airflow
USER 50000
ENTRYPOINT ["airflow"]
