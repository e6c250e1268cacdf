# The sonic-bench harness image: Locust master and workers and the model-export init
# container of deploy/k8s. It is set up by the Makefile's own `make setup`, the steps a
# fresh machine runs (Debian packages, virtualenv, model files, perf_analyzer), so the
# image and the README cannot drift apart (tests/test_deploy.py checks it).
#
#   docker build -t REGISTRY/sonic-bench:TAG .
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends make git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/sonic-bench
COPY . .
RUN make setup VENV=/opt/venv PYTHON=python3 && rm -rf /var/lib/apt/lists/* build
ENV PATH=/opt/venv/bin:$PATH

# Set up as root (Debian packages), run as a user of its own: uid 1000, as the
# deployment's securityContext says (runAsNonRoot); /results is where runs are written.
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /tmp sonic \
    && mkdir -p /results && chown sonic:sonic /results
USER 1000:1000

# Locust's web UI and worker port (master), Triton's ports for `sonic-bench serve`.
EXPOSE 8089 5557 8000 8001 8002
CMD ["sonic-bench", "--help"]
