# keygov's image: the web server, the Celery worker and beat all run from it (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KEYGOV_DATA_DIR=/app/var

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself, installed in place: settings find templates/ and static/ next to keygov/.
COPY . .
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home keygov \
    && mkdir -p /app/var \
    && chown keygov:keygov /app/var

USER keygov
EXPOSE 8000
CMD ["gunicorn", "keygov.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
