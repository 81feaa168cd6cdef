# One image for every Executor process; docker-compose.yml picks the command per service.
# Where no registry answers, scripts/compose-base-images.sh builds a Debian (debootstrap) image under this tag.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
WORKDIR /app
# A CA bundle in docker/certs/ca-bundle.crt (scripts/compose-check.sh copies the host's there) is what pip trusts
# during the build, so that it reaches the same package index as the host (an intercepting proxy's CA included);
# EXEC_PIP_INDEX_URL, when set, is that index.
COPY docker/certs/ /tmp/certs/
COPY pyproject.toml ./
ARG EXEC_PIP_INDEX_URL=
# The pinned dependencies first (their own layer: a code change does not download them again), then the code.
RUN set -eu; \
    if [ -f /tmp/certs/ca-bundle.crt ]; then export PIP_CERT=/tmp/certs/ca-bundle.crt; fi; \
    if [ -n "$EXEC_PIP_INDEX_URL" ]; then export PIP_INDEX_URL="$EXEC_PIP_INDEX_URL"; fi; \
    python3 -m venv /opt/venv; \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt; \
    pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt 'setuptools>=68'; \
    rm -rf /tmp/certs /tmp/requirements.txt
COPY README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info \
    && useradd --create-home executor && mkdir -p /data && chown executor:executor /data
USER executor
# Every process runs in /data (the volume): a relative path in any default lands there, never under /app.
WORKDIR /data
VOLUME ["/data"]
