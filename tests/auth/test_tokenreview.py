"""In-cluster callers: a ServiceAccount token from the real kube-apiserver (TokenRequest), verified
by the gateway through TokenReview with exactly the chart's RBAC."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import requests
import yaml

from tests.auth.conftest import TEST_SERVER, access_policy, connect
from tests.gateway.conftest import Gateway, pool, run_gateway, server, write_manifests
from tests.support import NODE_BIN, ROOT
from tests.support.kubeapi import KubeAPI, kube_api  # noqa: F401  (a fixture, registered by import)

pytestmark = pytest.mark.timeout(300)
AUDIENCE = "nmcp-test"
RBAC = ("templates/gateway-serviceaccount.yaml", "templates/gateway-tokenreview.yaml")


def chart_rbac(release_ns: str, tmp: Path) -> list[dict[str, Any]]:
    env = dict(os.environ, HELM_CACHE_HOME=str(tmp), HELM_CONFIG_HOME=str(tmp), HELM_DATA_HOME=str(tmp))
    args = [str(NODE_BIN / "helm"), "template", "nmcp", str(ROOT / "helm" / "nmcp"), "--namespace", release_ns,
            "--set", f"gateway.auth.tokenReview.audiences[0]={AUDIENCE}"]
    for template in RBAC:
        args += ["--show-only", template]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def agents(kube_api: KubeAPI) -> str:  # noqa: F811
    return kube_api.create_namespace("agents")


@pytest.fixture(scope="module")
def gateway(kube_api: KubeAPI, agents: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("tokenreview")
    release_ns = kube_api.create_namespace("nmcp")
    rbac = chart_rbac(release_ns, tmp)
    kube_api.apply(rbac, namespace=release_ns)
    account = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]["name"]
    kubeconfig = kube_api.write_kubeconfig(tmp / "gateway.kubeconfig",
                                           token=kube_api.service_account_token(release_ns, account))
    manifests = write_manifests(tmp, [pool(maxActive=5, maxIdle=5), server("test", TEST_SERVER),
                                      access_policy("triage", [{"serviceAccount": f"{agents}/triage"}], ["test"])])
    with run_gateway(manifests, NMCP_AUTH_TOKENREVIEW_AUDIENCES=AUDIENCE, NMCP_KUBECONFIG=str(kubeconfig),
                     NMCP_AUDIT=str(tmp / "audit.jsonl")) as gw:
        yield gw


def echo(url: str, token: str) -> str:
    async def call() -> str:
        async with connect(url, token) as client:
            result = await client.call_tool("echo", {"text": "from the cluster"})
            return result.content[0].text  # type: ignore[union-attr]
    return anyio.run(call)


def test_a_service_account_token_for_the_gateway_is_accepted(gateway: Gateway, kube_api: KubeAPI,  # noqa: F811
                                                             agents: str) -> None:
    token = kube_api.service_account_token(agents, "triage", audiences=[AUDIENCE])
    assert echo(gateway.mcp("test"), token) == "from the cluster"


def test_a_token_for_another_audience_is_refused(gateway: Gateway, kube_api: KubeAPI, agents: str) -> None:  # noqa: F811
    for token in (kube_api.service_account_token(agents, "triage"),  # the API server's own audience
                  kube_api.service_account_token(agents, "triage", audiences=["elsewhere"])):
        resp = requests.get(gateway.api("test"), headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert resp.status_code == 401, resp.text
        assert resp.headers["WWW-Authenticate"].startswith("Bearer resource_metadata=")
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def test_another_service_account_is_authenticated_but_not_allowed(gateway: Gateway, kube_api: KubeAPI,  # noqa: F811
                                                                  agents: str) -> None:
    token = kube_api.service_account_token(agents, "intruder", audiences=[AUDIENCE])
    resp = requests.get(gateway.api("test"), headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
