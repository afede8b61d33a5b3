"""The controllers the tests run are the project's own `metacontroller/controllers.yaml`: only the
webhook URLs are pointed at the operator under test, nothing else of the file changes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.metacontroller.harness import CONTROLLERS, HOOKS_HOST, MetaCluster, controllers, hook_urls

pytestmark = pytest.mark.kube


def _without_urls(doc: dict[str, Any]) -> dict[str, Any]:
    for hook in doc["spec"]["hooks"].values():
        hook["webhook"].pop("url")
    return doc


def test_only_the_webhook_urls_are_rewritten(mc: MetaCluster) -> None:
    shipped = [doc for doc in yaml.safe_load_all(CONTROLLERS.read_text()) if doc]
    applied = controllers(mc.operator.url)
    assert [d["metadata"]["name"] for d in applied] == [d["metadata"]["name"] for d in shipped]
    for before, after in zip(shipped, applied, strict=True):
        old, new = hook_urls(before), hook_urls(after)
        assert set(old) == set(new) == {"sync", "finalize", "customize"}, old
        for hook, url in old.items():
            assert urlsplit(url).hostname == HOOKS_HOST, url
            assert new[hook] == mc.operator.url + urlsplit(url).path
        assert _without_urls(after) == _without_urls(before)


def test_the_api_server_holds_them_as_applied(mc: MetaCluster) -> None:
    """What Metacontroller reads back is what was applied (an old Metacontroller CRD would prune
    `version: v2` silently, and every hook body would change shape)."""
    for doc in controllers(mc.operator.url):
        name = doc["metadata"]["name"]
        stored = mc.kube.session().get(
            f"{mc.kube.base_url}/apis/metacontroller.k8s.io/v1alpha1/compositecontrollers/{name}", timeout=10).json()
        for hook, wanted in doc["spec"]["hooks"].items():
            assert stored["spec"]["hooks"][hook]["version"] == wanted["version"] == "v2"
            assert stored["spec"]["hooks"][hook]["webhook"]["url"] == wanted["webhook"]["url"]
