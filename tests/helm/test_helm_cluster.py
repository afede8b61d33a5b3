"""`helm install` of the chart into the real kube-apiserver of the test suite, and its RBAC at work.

The API server (1.20, no kubelet, no controllers) stores and authorizes everything the chart
renders, so this proves the objects apply, in order (Helm installs crds/ first), and that the
Roles grant what the gateway does: the gateway runs here with its own ServiceAccount's token
(from the TokenRequest API) against that API server. Pods never run, so Deployments stay
unavailable; only what the API server itself decides is asserted.

The CompositeControllers are not installed (`controllers.create=false`): Metacontroller's CRDs
cannot be downloaded here, so the API server would not know the kind. test_helm_chart.py checks
their shape instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.helm.chart import CHART, HELM_SHA256, helm, helm_sha256, values_args
from tests.support import ROOT, VENV_BIN, free_port, stop, wait_http
from tests.support.kubeapi import KubeAPI

pytestmark = pytest.mark.kube

RELEASE = "nmcp"
GATEWAY = f"{RELEASE}-gateway"


@dataclass(frozen=True)
class Install:
    """What the module's one `helm install` put where."""

    api: KubeAPI
    namespace: str  # the release's
    served: tuple[str, str]  # the gateway's
    metacontroller_ns: str
    notes: str
    manifest: list[dict[str, Any]]
    home: Path


@pytest.fixture(scope="module")
def install(kube_api: KubeAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    assert helm_sha256() == HELM_SHA256
    home = tmp_path_factory.mktemp("helm-home")
    namespace = kube_api.create_namespace("nmcp")
    served = (kube_api.create_namespace("team"), kube_api.create_namespace("team"))
    metacontroller_ns = kube_api.create_namespace("metacontroller")
    sets = {
        "controllers.create": "false",
        "gateway.namespaces": "{" + ",".join(served) + "}",
        "metacontroller.namespace": metacontroller_ns,
        "metacontroller.rbac.create": "true",
        "metacontroller.rbac.bind": "true",
        "metacontroller.rbac.serviceAccount.name": "metacontroller",
        "metacontroller.rbac.serviceAccount.namespace": metacontroller_ns,
    }
    out = helm("install", RELEASE, str(CHART), "--namespace", namespace, *values_args(sets=sets),
               home=home, kubeconfig=kube_api.kubeconfig).stdout
    manifest = helm("get", "manifest", RELEASE, "--namespace", namespace, home=home,
                    kubeconfig=kube_api.kubeconfig).stdout
    yield Install(kube_api, namespace, served, metacontroller_ns, out.split("NOTES:", 1)[1],
                  [doc for doc in yaml.safe_load_all(manifest) if doc], home)
    helm("uninstall", RELEASE, "--namespace", namespace, home=home, kubeconfig=kube_api.kubeconfig, check=False)
    # The API server is shared with other test areas: leave no servers or Pods for their
    # all-namespace listings (nothing here has finalizers; unscheduled Pods go at once).
    for ns in served:
        kube_api.kubectl("delete", "mcpservers,mcppools,pods", "--all", "--namespace", ns, "--wait=false",
                         check=False)


def test_every_rendered_object_is_in_the_cluster(install: Install) -> None:
    api = install.api
    api.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                "crd/mcpservers.nmcp.nwrx.io", "crd/mcppools.nmcp.nwrx.io")
    assert install.manifest, "helm installed nothing"
    for obj in install.manifest:
        meta = obj["metadata"]
        args = ["get", f"{obj['kind'].lower()}.{obj['apiVersion'].split('/')[0]}"
                if "/" in obj["apiVersion"] else obj["kind"].lower(), meta["name"], "-o", "json"]
        if meta.get("namespace"):
            args += ["--namespace", meta["namespace"]]
        found = json.loads(api.kubectl(*args).stdout)
        assert found["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    kinds = {o["kind"] for o in install.manifest}
    assert {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy",
            "PodDisruptionBudget", "ClusterRole", "ClusterRoleBinding"} <= kinds
    # Kubernetes 1.20 has no policy/v1: the chart asked the cluster and used v1beta1.
    (pdb,) = [o for o in install.manifest if o["kind"] == "PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1beta1"


def test_installed_crds_accept_the_examples(install: Install) -> None:
    ns = install.served[0]
    for name in ("MCPPool.default.yaml", "MCPServer.default.yaml"):
        doc = yaml.safe_load((ROOT / "examples" / name).read_text())
        doc["metadata"]["namespace"] = ns
        install.api.apply(doc)
    got = json.loads(install.api.kubectl("get", "mcpserver", "context7", "-n", ns, "-o", "json").stdout)
    assert got["spec"]["pool"] == "default"


def test_notes_give_warnings_first_then_three_steps(install: Install) -> None:
    lines = [line for line in install.notes.splitlines() if line.strip()]
    assert lines[0] == "WARNINGS"
    warnings = install.notes.split("\n\n", 1)[0]
    assert "controllers.create is false" in warnings
    steps = [line.split(".")[0] for line in lines if re.match(r"^\d\. ", line)]
    assert steps == ["1", "2", "3"]
    assert f"port-forward service/{GATEWAY}" in install.notes
    assert f"kubectl apply -n {install.served[0]}" in install.notes
    assert f"/api/v1/namespaces/{install.served[0]}/servers/time/mcp" in install.notes
    # The Metacontroller flags the tests run with (tests/metacontroller reads the same values).
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    flags = " ".join(values["metacontroller"]["recommendedArgs"])
    assert "--client-go-qps" in flags and f"     {flags}\n" in install.notes


def _poll(get: Callable[[], requests.Response], done: Callable[[requests.Response], bool],
          timeout: float = 60) -> requests.Response:
    """Call `get` until `done` says yes or `timeout` passes (a failure guard); the last response."""
    deadline = time.monotonic() + timeout
    resp = get()
    while not done(resp) and time.monotonic() < deadline:
        time.sleep(0.3)
        resp = get()
    return resp


def _token_session(install: Install, namespace: str, account: str) -> requests.Session:
    return install.api.session(install.api.service_account_token(namespace, account))


def test_gateway_account_may_do_what_the_gateway_does_and_no_more(install: Install) -> None:
    """Each call the gateway makes (and a few it must not), with its ServiceAccount's own token."""
    api, base = install.api, install.api.base_url
    gateway = _token_session(install, install.namespace, GATEWAY)
    admin = api.session()
    for ns in install.served:
        admin.post(f"{base}/apis/nmcp.nwrx.io/v1/namespaces/{ns}/mcpservers", timeout=10, json={
            "apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPServer", "metadata": {"name": "probe"},
            "spec": {"image": "mcp/time", "transport": {"type": "stdio"}}})
        pod = admin.post(f"{base}/api/v1/namespaces/{ns}/pods", timeout=10, json={
            "metadata": {"name": "mcp-probe", "labels": {"nmcp.nwrx.io/server": "probe"}},
            "spec": {"containers": [{"name": "server", "image": "mcp/time", "stdin": True}]}})
        assert pod.status_code == 201, pod.text
    outside = install.namespace  # the release namespace is not among the served ones here

    def status(method: str, path: str, **kwargs: Any) -> int:
        return gateway.request(method, base + path, timeout=10, **kwargs).status_code

    merge = {"headers": {"Content-Type": "application/merge-patch+json"},
             "data": json.dumps({"metadata": {"annotations": {"nmcp.nwrx.io/requested-at": "2026-11-24T10:00:00Z"}}})}
    for ns in install.served:
        servers, pods = f"/apis/nmcp.nwrx.io/v1/namespaces/{ns}/mcpservers", f"/api/v1/namespaces/{ns}/pods"
        allowed = {
            "list servers": status("GET", servers),
            "watch servers": status("GET", servers + "?watch=1&timeoutSeconds=1"),
            "get server": status("GET", servers + "/probe"),
            "list pools": status("GET", f"/apis/nmcp.nwrx.io/v1/namespaces/{ns}/mcppools"),
            "annotate server": status("PATCH", servers + "/probe", **merge),
            "list pods": status("GET", pods + "?labelSelector=nmcp.nwrx.io/server"),
            "watch pods": status("GET", pods + "?watch=1&timeoutSeconds=1"),
            "get pod": status("GET", pods + "/mcp-probe"),
        }
        assert set(allowed.values()) == {200}, allowed
        # Authorized, then refused for a reason of the Pod's own (it has no node): not 403.
        reached = {
            "attach (POST)": status("POST", pods + "/mcp-probe/attach?stdin=true&stdout=true&container=server"),
            "attach (GET)": status("GET", pods + "/mcp-probe/attach?stdin=true&stdout=true&container=server"),
            "log": status("GET", pods + "/mcp-probe/log"),
        }
        assert 403 not in reached.values() and 401 not in reached.values(), reached
        denied = {
            "write status": status("PATCH", servers + "/probe/status", **merge),
            "delete server": status("DELETE", servers + "/probe"),
            "create server": status("POST", servers, json={"metadata": {"name": "x"}}),
            "create pod": status("POST", pods, json={"metadata": {"name": "x"}}),
            "delete pod": status("DELETE", pods + "/mcp-probe"),
            "exec": status("POST", pods + "/mcp-probe/exec?command=sh&stdin=true"),
            "read secrets": status("GET", f"/api/v1/namespaces/{ns}/secrets"),
        }
        assert set(denied.values()) == {403}, denied
    elsewhere = {
        "servers outside": status("GET", f"/apis/nmcp.nwrx.io/v1/namespaces/{outside}/mcpservers"),
        "servers everywhere": status("GET", "/apis/nmcp.nwrx.io/v1/mcpservers"),
        "pods outside": status("GET", f"/api/v1/namespaces/{outside}/pods"),
    }
    assert set(elsewhere.values()) == {403}, elsewhere


def test_the_gateway_runs_with_its_service_account(install: Install, tmp_path: Path) -> None:
    """`nmcp gateway --runtime kubernetes` as the chart runs it, with the gateway's token only."""
    api, ns = install.api, install.served[1]
    api.apply({"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPPool", "metadata": {"name": "default", "namespace": ns},
               "spec": {"maxActive": 2}})
    api.apply({"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPServer", "metadata": {"name": "time", "namespace": ns},
               "spec": {"image": "mcp/time", "transport": {"type": "stdio"}}})
    # Authentication is on by default: an in-cluster agent with its ServiceAccount token (TokenReview,
    # audience nmcp) and an access policy that lets it request the server.
    policy = {"subjects": [{"serviceAccount": f"{ns}/agent"}], "servers": ["time"], "operations": ["request"]}
    api.apply({"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPAccessPolicy",
               "metadata": {"name": "agent", "namespace": ns}, "spec": policy})
    agent = {"Authorization": f"Bearer {api.service_account_token(ns, 'agent', audiences=['nmcp'])}"}
    token = api.service_account_token(install.namespace, GATEWAY)
    kubeconfig = api.write_kubeconfig(tmp_path / "gateway.kubeconfig", token=token, namespace=install.namespace)
    deployment = next(o for o in install.manifest if o["kind"] == "Deployment" and o["metadata"]["name"] == GATEWAY)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = [a.replace("0.0.0.0:8080", f"127.0.0.1:{free_port()}") for a in container["args"]]
    bind = args[args.index("--bind") + 1]
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env.update({e["name"]: e["value"] for e in container["env"]}, NMCP_KUBECONFIG=str(kubeconfig),
               NMCP_GRACEFUL_TIMEOUT="3")  # kubernetes runtime: idle, it still waits out all 20 s
    log = (tmp_path / "gateway.log").open("w+")
    proc = subprocess.Popen([str(VENV_BIN / "nmcp"), *args], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://{bind}"
    try:
        wait_http(base + "/healthz", 60, proc)
        ready = _poll(lambda: requests.get(base + "/readyz", timeout=10), lambda r: r.status_code == 200)
        assert ready.status_code == 200, ready.text
        assert requests.get(f"{base}/api/v1/namespaces/{ns}/servers", timeout=10).status_code == 401
        listed = _poll(lambda: requests.get(f"{base}/api/v1/namespaces/{ns}/servers", headers=agent, timeout=10),
                       lambda r: r.status_code == 200 and "time" in r.text)
        assert listed.status_code == 200, listed.text
        assert "time" in [s["name"] for s in listed.json()["servers"]]
        started = requests.post(f"{base}/api/v1/namespaces/{ns}/servers/time/request", headers=agent, timeout=30)
        assert started.status_code == 202, started.text
        server = json.loads(api.kubectl("get", "mcpserver", "time", "-n", ns, "-o", "json").stdout)
        assert "nmcp.nwrx.io/requested-at" in server["metadata"].get("annotations", {})
    finally:
        stop(proc, grace=20)
        log.seek(0)
        output = log.read()
        log.close()
    # A refusal shows as a 403 in the audit stream (on in the chart) or as the runtime's "may not" error (Forbidden).
    assert not re.search(r'"status": 403|forbidden|may not', output, re.IGNORECASE), output


def test_gateway_serving_every_namespace_gets_a_cluster_role(install: Install) -> None:
    """gateway.namespaces=["*"]: a second release whose gateway reads every namespace, and still
    only what the gateway needs."""
    api, release, namespace = install.api, "nmcp-all", install.api.create_namespace("nmcp-all")
    sets = {"controllers.create": "false", "gateway.namespaces": "{*}"}
    helm("install", release, str(CHART), "--namespace", namespace, *values_args(sets=sets), home=install.home,
         kubeconfig=api.kubeconfig)
    try:
        gateway = _token_session(install, namespace, f"{release}-gateway")
        base = api.base_url
        anywhere = install.served[0]
        codes = {
            "servers everywhere": gateway.get(f"{base}/apis/nmcp.nwrx.io/v1/mcpservers", timeout=10).status_code,
            "pods everywhere": gateway.get(f"{base}/api/v1/pods?labelSelector=nmcp.nwrx.io/server",
                                           timeout=10).status_code,
            "pools in any namespace": gateway.get(f"{base}/apis/nmcp.nwrx.io/v1/namespaces/{anywhere}/mcppools",
                                                  timeout=10).status_code,
        }
        assert set(codes.values()) == {200}, codes
        denied = {
            "secrets": gateway.get(f"{base}/api/v1/secrets", timeout=10).status_code,
            "delete pods": gateway.delete(f"{base}/api/v1/namespaces/{anywhere}/pods/mcp-probe",
                                          timeout=10).status_code,
        }
        assert set(denied.values()) == {403}, denied
    finally:
        helm("uninstall", release, "--namespace", namespace, home=install.home, kubeconfig=api.kubeconfig,
             check=False)


# What Metacontroller does to run nmcp's controllers, from ../shared/reference/metacontroller.md
# §4.5 (read from its code): (group, resource, subresource, verb).
METACONTROLLER_NEEDS = [
    *[("nmcp.nwrx.io", r, "", v) for r in ("mcppools", "mcpservers") for v in ("get", "list", "watch", "update")],
    *[("nmcp.nwrx.io", r, sub, "update") for r in ("mcppools", "mcpservers") for sub in ("status", "finalizers")],
    *[("", r, "", v) for r in ("pods", "services")
      for v in ("get", "list", "watch", "create", "update", "patch", "delete")],
    *[("", "events", "", v) for v in ("create", "patch", "update")],
    *[("metacontroller.k8s.io", r, "", v) for r in ("compositecontrollers", "decoratorcontrollers",
                                                     "controllerrevisions") for v in ("get", "list", "watch")],
    *[("apiextensions.k8s.io", "customresourcedefinitions", "", v) for v in ("get", "list", "watch")],
    *[("", "namespaces", "", v) for v in ("list", "watch")],
]


def test_metacontroller_cluster_role_grants_what_metacontroller_needs(install: Install) -> None:
    session = _token_session(install, install.metacontroller_ns, "metacontroller")
    url = f"{install.api.base_url}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

    def allowed(group: str, resource: str, sub: str, verb: str, namespace: str = "") -> bool:
        attrs = {"group": group, "resource": resource, "subresource": sub, "verb": verb, "namespace": namespace}
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attrs}}
        review = session.post(url, timeout=10, json=body)
        assert review.status_code == 201, review.text
        return review.json()["status"]["allowed"]

    missing = [need for need in METACONTROLLER_NEEDS if not allowed(*need, namespace=install.served[0])]
    assert not missing, missing
    assert not allowed("", "secrets", "", "get", install.served[0])
    assert not allowed("apps", "deployments", "", "create", install.served[0])
