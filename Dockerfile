# jitbot container: non-root, state on the /data volume, config mounted at /app/config.
#   docker build -t jitbot .
#   docker run -e SLACK_BOT_TOKEN -e SLACK_APP_TOKEN -v jitbot-data:/data -v $PWD/config:/app/config:ro jitbot
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
COPY bot.py runtime.py ./
COPY core ./core
COPY handlers ./handlers
COPY strategies ./strategies
COPY storage ./storage
COPY config ./config

RUN useradd --system --uid 10001 --home-dir /nonexistent jitbot && mkdir -p /data && chown jitbot /data
USER jitbot
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"
ENTRYPOINT ["python", "bot.py"]
CMD ["run"]
