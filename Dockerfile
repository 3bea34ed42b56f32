# jitbot container: non-root, state on the /data volume, config mounted at /app/config.
#   docker build -t jitbot .
#   docker run -e SLACK_BOT_TOKEN -e SLACK_APP_TOKEN -v jitbot-data:/data -v $PWD/config:/app/config:ro jitbot
# or `docker compose up` (docker-compose.yml). GET /health and /metrics on port 8080. `docker stop` sends
# SIGTERM: the bot finishes in-flight work and exits within 10 s, Docker's default stop timeout.
# tests/e2e/test_container_image.py starts the bot from exactly what the COPY lines bring in and
# requirements-runtime.lock (docs/operations.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    JITBOT_DB=/data/jitbot.db \
    JITBOT_CONFIG=/app/config/flows.yaml \
    JITBOT_LOG_FORMAT=json \
    JITBOT_HTTP_ADDR=0.0.0.0:8080

WORKDIR /app
COPY requirements-runtime.lock ./
RUN pip install --no-cache-dir -r requirements-runtime.lock
COPY bot.py runtime.py audit_cli.py ./
COPY core ./core
COPY handlers ./handlers
COPY strategies ./strategies
COPY storage ./storage
COPY api ./api
COPY cli ./cli
COPY reports ./reports
COPY sandbox ./sandbox
COPY examples ./examples
COPY audit_sinks ./audit_sinks
COPY config ./config

RUN useradd --system --uid 10001 --home-dir /nonexistent jitbot && mkdir -p /data && chown jitbot /data
USER jitbot
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "bot.py"]
CMD ["run"]
