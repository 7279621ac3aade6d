# syntax=docker/dockerfile:1
# Any Cascade function as a small non-root image, served by `cascade serve functions/$FUNCTION`:
#
#   docker build --build-arg FUNCTION=inventory -t cascade-inventory .
#
# Every image holds the whole functions/ folder (small, and one shared layer for all of them:
# functions import the shop's contracts from functions/shop); FUNCTION picks which one runs.
# It listens on $PORT (8080, as Knative sets it) on every interface, keeps SQLite files and the
# notification outbox under /data, and runs as uid 65532 with a read-only root filesystem in
# the chart (its emptyDirs are /tmp and /data).
# The base image is pinned by digest, so a rebuild gets the same bytes. The value below is a
# placeholder until someone with registry access writes the digest in (`docker buildx imagetools
# inspect python:3.11-slim-bookworm`; docs/kubernetes.md, "Images and dependencies"): a build with
# it fails at the first FROM with an invalid reference that names it. --build-arg
# PYTHON_IMAGE=...@sha256:<digest> works meanwhile.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:PIN-THE-DIGEST-see-docs-kubernetes-md

# ---------------------------------------------------------------- build: a virtualenv
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first: this layer is reused until they change. requirements/image.txt pins every
# package with its hashes (scripts/image_requirements.py writes it from pyproject.toml), so pip
# refuses any file that is not exactly the one resolved; the build backend comes from it too,
# hence no build isolation for the project itself.
COPY requirements/image.txt requirements.txt
RUN pip install --require-hashes -r requirements.txt
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install --no-deps --no-build-isolation . \
 && pip uninstall -y pip setuptools wheel

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}
ARG FUNCTION
RUN test -n "${FUNCTION}" \
    || { echo "build with --build-arg FUNCTION=<folder under functions/>, e.g. FUNCTION=inventory" >&2; exit 1; } \
 && groupadd --gid 65532 cascade \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin cascade \
 && mkdir -p /data \
 && chown 65532:65532 /data
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    FUNCTION=${FUNCTION} \
    CASCADE_HOST=0.0.0.0 \
    PORT=8080 \
    CASCADE_DATA_DIR=/data \
    NOTIFICATION_OUTBOX=/data/outbox
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY functions/ functions/
RUN test -f "functions/${FUNCTION}/func.py" \
    || { echo "functions/${FUNCTION}/func.py not found: FUNCTION must name a folder under functions/" >&2; exit 1; } \
 && python -m compileall -q functions
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/bin/sh", "-c", "exec cascade serve \"functions/${FUNCTION}\" \"$@\"", "cascade"]
