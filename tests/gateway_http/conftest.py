"""Fixtures of the HTTP upstream tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.runtime import HttpEndpoint
from tests.gateway_http.servers import EVERYTHING_MODES, everything


@pytest.fixture(scope="module", params=sorted(EVERYTHING_MODES))
def everything_endpoint(request: pytest.FixtureRequest) -> Iterator[HttpEndpoint]:
    """One server-everything per transport, shared by a module's tests (each opens its own session)."""
    with everything(request.param) as (endpoint, _):
        yield endpoint
