#!/bin/sh
# Copies the CRDs from the top-level crds/ (the one source of the schema) into the chart.
# Run it after changing crds/*.yaml; tests/helm fails while the two differ.
# Copies rather than symlinks: Helm 3.10 follows a symlink but logs a warning on every command,
# and tools that read charts from git (Argo CD, for one) refuse symlinks leading out of the chart.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
for crd in "$root"/crds/*.yaml; do
    cp "$crd" "$root/helm/nmcp/crds/$(basename "$crd")"
done
