#!/usr/bin/env bash
# A Debian bookworm root filesystem with python3 (3.11), its venv module and the CA bundle: the
# base of the image where no registry image can be pulled (these machines reach Debian's and
# PyPI's package registries only). Built once per machine with mmdebstrap (about a minute), cached
# outside the clone like the kube-apiserver binary; prints the tarball's path.
#
# minbase, without docs, man pages and translations, and merged-/usr made by mmdebstrap's hook
# rather than by the usrmerge package (which would pull in perl): about 130 MB, the size of
# python:3.11-slim-bookworm.
set -euo pipefail
CACHE=${NMCP_IMAGE_CACHE:-/var/cache/nmcp}
TAR=$CACHE/debian-bookworm-python3.tar
if [ -f "$TAR" ] && [ -s "$TAR" ]; then echo "$TAR"; exit 0; fi

command -v mmdebstrap >/dev/null || { echo "mmdebstrap is missing: run .ci/setup" >&2; exit 1; }
mkdir -p "$CACHE"
rm -rf "$TAR.tmp"
mmdebstrap --format=tar --variant=minbase --include=python3,python3-venv,ca-certificates \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    bookworm "$TAR.tmp" >&2
mv "$TAR.tmp" "$TAR"
echo "$TAR"
