#!/usr/bin/env bash
# Builds the nmcp image with podman on a machine that reaches no container registry (`make image`).
#
#   image/build.sh [TAG]     default TAG: localhost/nmcp:<version in pyproject.toml>
#   EXTRA_PACKAGES="mcp-server-time==2026.10.19" image/build.sh TAG   also installs those packages
#
# 1. base: a Debian bookworm rootfs made by image/base.sh (cached in /var/cache/nmcp), imported
#    into podman as localhost/nmcp-base:bookworm once;
# 2. wheelhouse: `pip wheel` on this machine, of every dependency and the build backend, cached in
#    /var/cache/nmcp/wheels/<hash of the requirements, EXTRA_PACKAGES and the Python version>;
# 3. `podman build` of the repository's Dockerfile on that base, the wheelhouse mounted at /wheels,
#    with --network none: no build step can reach any network, so everything installed comes from
#    the base and the wheelhouse.
#
# podman runs with runc and cgroupfs (crun fails on these machines' hybrid cgroups) and explicit
# ulimits. Prints the image reference on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${NMCP_IMAGE_CACHE:-/var/cache/nmcp}
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
TAG=${1:-localhost/nmcp:$VERSION}
BASE=localhost/nmcp-base:bookworm
EXTRA_PACKAGES=${EXTRA_PACKAGES:-}
PODMAN=(podman --cgroup-manager=cgroupfs)
LIMITS=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)

command -v podman >/dev/null || { echo "podman is missing: run .ci/setup" >&2; exit 1; }

if ! "${PODMAN[@]}" image exists "$BASE"; then
    tar=$(bash image/base.sh)
    "${PODMAN[@]}" import --quiet "$tar" "$BASE" >/dev/null
fi

# Wheels are built for this Python: it must be the base's minor version.
here=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
there=$("${PODMAN[@]}" run --rm --network none "${LIMITS[@]}" "$BASE" \
    python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$here" != "$there" ]; then
    echo "the wheelhouse would be built with Python $here, the base image has $there" >&2
    exit 1
fi

# What the build installs: the build backend, the dependencies, the extras (never nmcp itself: the
# Dockerfile builds it from the sources in the context).
mapfile -t requirements < <("$PY" - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))
print(*project["build-system"]["requires"], *project["project"]["dependencies"], sep="\n")
EOF
)
read -ra extra <<< "$EXTRA_PACKAGES"
stamp=$(printf '%s\n' "$here" "${requirements[@]}" "${extra[@]}" | sha256sum | cut -c1-16)
WHEELS=$CACHE/wheels/$stamp
if [ ! -d "$WHEELS" ]; then
    rm -rf "$WHEELS.tmp"
    "$PY" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$WHEELS.tmp" \
        "${requirements[@]}" "${extra[@]}" >&2
    mv "$WHEELS.tmp" "$WHEELS"
fi

# The wheelhouse is mounted (not copied) over the Dockerfile's /wheels: its files are then no part
# of the layer cache, so builds with other EXTRA_PACKAGES keep each other's cached layers.
"${PODMAN[@]}" build "${LIMITS[@]}" --network none --pull=never --format docker \
    --volume "$WHEELS:/wheels:ro" \
    --build-arg PYTHON_IMAGE="$BASE" --build-arg EXTRA_PACKAGES="$EXTRA_PACKAGES" \
    --tag "$TAG" . >&2
echo "$TAG"
