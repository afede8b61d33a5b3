# One image for both roles of nmcp:
#   nmcp operator --bind 0.0.0.0:8000    the Metacontroller webhooks (hooks)
#   nmcp gateway --bind 0.0.0.0:8080 --runtime kubernetes    the MCP gateway
# The Helm chart (helm/nmcp) runs it as UID/GID 10001 with a read-only root filesystem.
# Everything installed comes from the build context or PyPI; nothing else is downloaded.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: install the package and its dependencies into a virtualenv, so the final stage
# copies one directory and carries no pip cache, build backend or source tree.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/nmcp
WORKDIR /src
COPY pyproject.toml README.md ./
COPY crds/ crds/
COPY nmcp/ nmcp/
COPY hooks/ hooks/
COPY gateway/ gateway/
# Compile here: at run time the root filesystem is read-only, so Python could not cache bytecode.
RUN /opt/nmcp/bin/pip install --no-cache-dir . \
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
