# ehub image for the multi-host deployment (docker-compose.yml): Airflow 3 plus
# the hub's packages, installed from the lock file. No keys or secrets inside.
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 AIRFLOW_HOME=/opt/airflow
RUN apt-get update && apt-get install -y --no-install-recommends curl poppler-utils \
       fonts-arphic-gbsn00lp softhsm2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ehub
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir "uv==0.13.9" \
    && uv pip install --system --no-cache -r requirements.lock
COPY . .
RUN uv pip install --system --no-cache --no-deps -e .
USER 50000
ENTRYPOINT ["airflow"]
