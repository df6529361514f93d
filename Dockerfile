# The image docker-compose.yml builds (not built on this project's machines: no Docker engine).
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg espeak-ng \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/vidfarm vidfarm
WORKDIR /opt/vidfarm
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . \
 && python -m vidfarm.api.web.assets || true
USER vidfarm
ENV VIDFARM_DATA_DIR=/var/lib/vidfarm
EXPOSE 8000
CMD ["vidfarm", "serve"]
