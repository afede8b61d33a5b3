"""Fixtures of the image tests: the image built once per session by image/build.sh (what `make
image` runs), a variant with an MCP server for `nmcp up`, and the suite's real kube-apiserver.

The build runs here, not in .ci/setup, so that the tests always run the image of this tree (an
unchanged tree rebuilds from podman's layer cache in seconds); .ci/setup makes the slow, rarely
changing part, the Debian base (image/base.sh, cached in /var/cache/nmcp)."""

from __future__ import annotations

import pytest

from tests.image.podman import IMAGE, TIME_SERVER, UP_IMAGE, build
from tests.support.kubeapi import KubeAPI, kube_api  # noqa: F401  (kube_api is a fixture, registered by import)


@pytest.fixture(scope="session")
def image() -> str:
    """The image the chart deploys, built from this tree (a warm rebuild takes seconds)."""
    return build(IMAGE)


@pytest.fixture(scope="session")
def up_image(image: str) -> str:
    """The same Dockerfile with EXTRA_PACKAGES=mcp-server-time, for `nmcp up` in the image."""
    return build(UP_IMAGE, extra_packages=TIME_SERVER)


@pytest.fixture(scope="session")
def kube(kube_api: KubeAPI) -> KubeAPI:  # noqa: F811
    """The API server with the CRDs installed."""
    kube_api.install_crds()
    return kube_api

