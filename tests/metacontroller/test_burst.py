"""Fifty servers requested within one second into a pool with maxActive 5 (burst.py), against the
real Metacontroller run with the recommended client flags."""

from __future__ import annotations

import pytest

from tests.metacontroller.burst import MAX_ACTIVE, SERVERS, run_burst
from tests.metacontroller.harness import RECOMMENDED_FLAGS, MetaCluster

pytestmark = pytest.mark.kube


def test_fifty_requests_in_one_second_never_exceed_max_active(mc: MetaCluster) -> None:
    assert mc.metacontroller.flags == RECOMMENDED_FLAGS
    result = run_burst(mc)
    summary = result.summary()
    assert result.settled, f"the queue did not drain: {summary}"
    assert result.max_alive <= MAX_ACTIVE, summary
    assert result.pods_per_server == dict.fromkeys(result.servers, 1), summary
    assert result.pods == SERVERS
    assert result.seen_ready == set(result.servers), summary
