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
# Static files: compressed copies under hashed names in /app/var/staticfiles, served by whitenoise
# (KEYGOV_STATIC_MANIFEST). Loading the settings needs a signing key: a throwaway one, never used
# at run time (compose sets the real KEYGOV_SECRET_KEY).
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home keygov \
    && mkdir -p /app/var \
    && KEYGOV_STATIC_MANIFEST=true KEYGOV_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
        python manage.py collectstatic --noinput -v 0 \
    && chown -R keygov:keygov /app/var
ENV KEYGOV_STATIC_MANIFEST=true

USER keygov
EXPOSE 8000
CMD ["gunicorn", "keygov.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
