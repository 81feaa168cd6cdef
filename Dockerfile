# One image for every Executor process; docker-compose.yml picks the command per service.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir . && useradd --create-home executor && mkdir -p /data && chown executor /data
USER executor
VOLUME ["/data"]
