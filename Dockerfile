# softsweep: one image for the study creator and the workers (docker-compose.yml).
FROM python:3.11-slim

# Fashion-MNIST from the official mirror is fetched on first use into the cache volume;
# mount a folder with the IDX files and set SOFTSWEEP_DATA to use your own copy instead.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    XDG_CACHE_HOME=/cache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY sweep ./sweep
COPY studies ./studies
RUN pip install .

# Workers run as a plain user.
RUN useradd --create-home sweep && mkdir -p /cache && chown sweep /cache
USER sweep
ENTRYPOINT []
CMD ["sweep", "--help"]
