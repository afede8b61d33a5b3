#!/usr/bin/env bash
# Builds a real kube-apiserver from Debian bookworm's kubernetes source package, once per machine.
# No reachable registry ships the binary; the recipe and its caveats are in
# ../shared/reference/kube-apiserver.md. Prints the path of the cached binary.
set -euo pipefail
VERSION=1.20.5+really1.20.2-1.1+deb12u1
CACHE=${NMCP_KUBE_CACHE:-/var/cache/nmcp}
BIN=$CACHE/kube-apiserver-1.20.2
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends golang-go etcd-server etcd-client \
    golang-github-modern-go-reflect2-dev make rsync openssl dpkg-dev >&2

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/lists/partial"
uri=$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources | head -1)
echo "deb-src $uri bookworm main" > "$W/src.list"
APTO=(-o "Dir::Etc::SourceList=$W/src.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$W/lists")
apt-get "${APTO[@]}" update >&2
(cd "$W" && apt-get "${APTO[@]}" source --download-only "kubernetes=$VERSION" >&2 \
    && tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz)
cd "$W/kubernetes-1.20.2"
# The vendored reflect2 1.0.1 crashes under Go >= 1.18; Debian's 1.0.2 works.
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/
mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
cd .go/src/k8s.io/kubernetes
GOPATH=$W/kubernetes-1.20.2/.go CGO_ENABLED=0 GO111MODULE=off make WHAT=cmd/kube-apiserver >&2
mkdir -p "$CACHE"
cp _output/bin/kube-apiserver "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
echo "$BIN"
