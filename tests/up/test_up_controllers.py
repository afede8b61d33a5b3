"""`nmcp up` plays Metacontroller with the same two CompositeControllers a cluster runs.

metacontroller/controllers.yaml is what `kubectl apply` installs next to Metacontroller; the
embedded runtime declares its controllers in code (nmcp.embedded.controller). They may differ
only where they must: the hooks are called in-process instead of over HTTP, and the controller
is marked as the local runtime.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from nmcp.embedded.controller import POOL_CONTROLLER, RUNTIME_ANNOTATION, SERVER_CONTROLLER
from tests.support import ROOT

DECLARED = {doc["metadata"]["name"]: doc
            for doc in yaml.safe_load_all((ROOT / "metacontroller" / "controllers.yaml").read_text()) if doc}


def comparable(controller: dict[str, Any]) -> dict[str, Any]:
    """The controller without what only says how its hooks are reached, and without the runtime mark."""
    out = copy.deepcopy(controller)
    hooks = out["spec"]["hooks"]
    assert all("webhook" in hook for hook in hooks.values())
    out["spec"]["hooks"] = {name: {k: v for k, v in hook.items() if k != "webhook"} for name, hook in hooks.items()}
    annotations = out["metadata"].pop("annotations", {})
    assert set(annotations) <= {RUNTIME_ANNOTATION}
    return out


@pytest.mark.parametrize("embedded", [POOL_CONTROLLER, SERVER_CONTROLLER], ids=lambda c: c["metadata"]["name"])
def test_nmcp_up_runs_the_controllers_a_cluster_runs(embedded: dict[str, Any]) -> None:
    declared = DECLARED[embedded["metadata"]["name"]]
    assert comparable(embedded) == comparable(declared)
    assert embedded["metadata"]["annotations"] == {RUNTIME_ANNOTATION: "local"}


def test_every_declared_controller_is_embedded() -> None:
    assert set(DECLARED) == {POOL_CONTROLLER["metadata"]["name"], SERVER_CONTROLLER["metadata"]["name"]}
