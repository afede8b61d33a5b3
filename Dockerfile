# One image for both roles of nmcp:
#   nmcp operator --bind 0.0.0.0:8000    the Metacontroller webhooks (hooks)
#   nmcp gateway --bind 0.0.0.0:8080 --runtime kubernetes    the MCP gateway
# The Helm chart (helm/nmcp) runs it as UID/GID 10001 with a read-only root filesystem.
#
# Builds anywhere with `docker build .` (or podman): Python packages come from PyPI. Two things
# let it build with no network at all (image/build.sh, `make image`, does both):
#   the build argument PYTHON_IMAGE: any Debian-based image with python3 (3.11+) and its venv
#     module, e.g. one made with mmdebstrap and `podman import` (image/base.sh);
#   a wheelhouse (`pip wheel`) at /wheels: when it holds wheels, pip installs from it alone
#     (--no-index). It comes from image/wheels/ in the build context, or a mount over /wheels
#     (`podman build --volume DIR:/wheels:ro`, what image/build.sh does).
# EXTRA_PACKAGES adds PyPI packages to the same virtualenv, e.g. MCP servers for `nmcp up` in the
# image ("mcp-server-time==2026.10.19"); none by default: in a cluster, servers run in their own images.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: install the package and its dependencies into a virtualenv, so the final stage
# copies one directory and carries no pip cache, build backend or source tree.
FROM ${PYTHON_IMAGE} AS build
ARG EXTRA_PACKAGES=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/nmcp
# The wheelhouse: image/wheels/ holds only its README unless you put wheels there.
COPY image/wheels/ /wheels/
WORKDIR /src
COPY pyproject.toml README.md ./
COPY crds/ crds/
COPY nmcp/ nmcp/
COPY hooks/ hooks/
COPY gateway/ gateway/
# pip, setuptools and the wheelhouse stay in this stage. Compile here: at run time the root
# filesystem is read-only, so Python could not cache bytecode.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN offline=(); if compgen -G "/wheels/*.whl" >/dev/null; then offline=(--no-index --find-links /wheels); fi \
    && read -ra extra <<< "$EXTRA_PACKAGES" \
    && /opt/nmcp/bin/pip install --no-cache-dir "${offline[@]}" . "${extra[@]}" \
    && /opt/nmcp/bin/pip uninstall --yes --quiet pip setuptools \
    && /opt/nmcp/bin/python -m compileall -q /opt/nmcp/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="nmcp" \
      org.opencontainers.image.description="MCP servers on demand on Kubernetes behind one HTTP gateway" \
      org.opencontainers.image.licenses="MIT"
# A fixed numeric user, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 nmcp \
    && useradd --system --uid 10001 --gid nmcp --home-dir /home/nmcp --create-home --shell /usr/sbin/nologin nmcp
COPY --from=build /opt/nmcp /opt/nmcp
ENV PATH=/opt/nmcp/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/nmcp
EXPOSE 8000 8080
ENTRYPOINT ["nmcp"]
CMD ["--help"]
