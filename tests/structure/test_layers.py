"""The bottom layer stays light: importing the resource model loads no web framework, no gevent,
no HTTP client and no server (the layers themselves are lint-imports' contract in pyproject.toml)."""

from __future__ import annotations

import json
import subprocess

from tests.support import ROOT, VENV_BIN

HEAVY = ("flask", "werkzeug", "gevent", "requests", "urllib3", "gunicorn")
# Every module of the model, then what got loaded that comes from a heavy package.
PROBE = """
import json, pkgutil, importlib, sys
import nmcp.model
for info in pkgutil.walk_packages(nmcp.model.__path__, "nmcp.model."):
    importlib.import_module(info.name)
heavy = %r
print(json.dumps(sorted({m for m in sys.modules if m.split(".")[0] in heavy})))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("nmcp.model."))))
"""


def test_importing_the_model_pulls_in_no_flask_gevent_requests_or_gunicorn() -> None:
    done = subprocess.run([str(VENV_BIN / "python"), "-c", PROBE % (HEAVY,)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    heavy, model = (json.loads(line) for line in done.stdout.splitlines())
    assert "nmcp.model.resources" in model and "nmcp.model.schema" in model  # the probe did import the model
    assert heavy == []


def test_the_probe_sees_a_heavy_import() -> None:
    """The same probe with the gateway's config and HTTP client loaded: it reports them."""
    probe = PROBE.replace("import nmcp.model\n", "import nmcp.model\nimport gateway.kube.client\n")
    done = subprocess.run([str(VENV_BIN / "python"), "-c", probe % (HEAVY,)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    heavy = json.loads(done.stdout.splitlines()[0])
    assert {"requests", "urllib3"} <= set(heavy)
