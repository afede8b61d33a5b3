"""The HTTP upstreams under gevent, as the gateway worker runs them (in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gateway.runtime import HttpEndpoint
from tests.support import ROOT

SCRIPT = Path(__file__).with_name("gevent_session.py")


def test_concurrent_calls_and_a_sampling_answer_under_gevent(everything_endpoint: HttpEndpoint) -> None:
    run = subprocess.run([sys.executable, str(SCRIPT), everything_endpoint.url, everything_endpoint.transport],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    long_running, sampled, echoed = summary["texts"]
    assert long_running.startswith("Long running operation completed")
    assert "from gevent" in sampled
    assert echoed == "Echo: green"
    assert summary["progress"] == [1, 2]
    assert summary["ended"] == "ended"
    assert summary["leaked"] == 0
