# One image for every Chime service: `chime api`, `chime planner`, `chime executor`, `chime dlq`, ...
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install -c constraints.txt . && useradd --system --uid 10001 chime \
    && mkdir -p /var/lib/chime/planner && chown -R chime /var/lib/chime
USER chime
ENV CHIME_API_HOST=0.0.0.0
ENTRYPOINT ["chime"]
CMD ["api"]
