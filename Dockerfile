# The Pod Deployment Portal: gunicorn serving portal.wsgi, static files by whitenoise.
#
#   docker build -t pod-portal .
#   docker run --env-file portal.env pod-portal python manage.py migrate --noinput   # release step
#   docker run --env-file portal.env -p 8000:8000 pod-portal
#
# Nothing secret is baked in: DJANGO_SECRET_KEY, GH_TOKEN (or GITHUB_APP_*), GITHUB_WEBHOOK_SECRET
# and DATABASE_URL come from the runtime environment (README, "Running in production").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    GUNICORN_WORKERS=2 \
    GUNICORN_THREADS=4 \
    GUNICORN_TIMEOUT=60

WORKDIR /app

# Pinned runtime requirements only (psycopg[binary] ships its own libpq: no build tools needed).
# Compiled to bytecode here: the root filesystem is read-only at runtime (and PYTHONDONTWRITEBYTECODE
# is set), so without .pyc files every process would compile Django from source on each start.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY manage.py ./
COPY portal/ portal/
COPY deployments/ deployments/
COPY accounts/ accounts/
COPY api/ api/
COPY templates/ templates/
COPY static/ static/

# Hashed, compressed static files for whitenoise. The key exists for this one command only; it
# is not in the image's environment and the real one is required at runtime.
RUN DJANGO_SECRET_KEY=collectstatic-build-step-only python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q .

# The code stays root-owned and read-only to the app; /data is writable for a SQLite file when
# no DATABASE_URL is given (production should set a PostgreSQL DATABASE_URL).
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin portal \
    && mkdir /data && chown portal:portal /data
ENV DATABASE_URL=sqlite:////data/portal.sqlite3
USER portal:portal

EXPOSE 8000

# Liveness only (no database or GitHub): /health is the readiness probe for the orchestrator.
# The Host header must be one Django accepts, so it is taken from DJANGO_ALLOWED_HOSTS.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request as u; h = os.environ.get('DJANGO_ALLOWED_HOSTS', '').split(',')[0].strip().lstrip('*.') or 'localhost'; u.urlopen(u.Request('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/health/live', headers={'Host': h}), timeout=4)"

# exec: gunicorn replaces the shell as PID 1, so it receives SIGTERM and stops gracefully.
CMD ["sh", "-c", "exec gunicorn portal.wsgi --bind 0.0.0.0:${PORT} --workers ${GUNICORN_WORKERS} --threads ${GUNICORN_THREADS} --timeout ${GUNICORN_TIMEOUT} --graceful-timeout 30 --keep-alive 5 --no-control-socket --access-logfile - --forwarded-allow-ips \"${FORWARDED_ALLOW_IPS:-127.0.0.1}\""]
