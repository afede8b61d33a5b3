"""The chart as helm renders it: lint, schema validity, and that the pieces point at each other.

Every scenario is one `helm/nmcp/ci/<scenario>-values.yaml`; what a test expects is derived from
that file merged over the chart's values.yaml, not written down twice.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

import crds
from nmcp.model import schema
from nmcp.model.naming import server_labels
from nmcp.model.resources import API_VERSION, read_pool, read_server
from tests.helm.chart import (
    CHART,
    CI_VALUES,
    HELM_SHA256,
    NAMESPACE,
    by_kind,
    helm,
    helm_sha256,
    one,
    template,
    template_error,
)
from tests.helm.shapes import SCHEMAS, shape_errors
from tests.support import ROOT, VENV_BIN

SCENARIOS = [pytest.param(path, id=path.name.removesuffix("-values.yaml")) for path in CI_VALUES]
FULLNAME = "nmcp"  # release "nmcp" already contains the chart name
HOOKS, GATEWAY = f"{FULLNAME}-hooks", f"{FULLNAME}-gateway"


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's value coalescing for maps: `over` wins key by key, lists are replaced whole."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def values_of(values_file: Path) -> dict[str, Any]:
    """The values a scenario renders with."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return _merge(defaults, yaml.safe_load(values_file.read_text()) or {})


def served_namespaces(values: Mapping[str, Any]) -> list[str]:
    """What the gateway is meant to serve: the listed namespaces, the release's, or ["*"]."""
    return list(values["gateway"]["namespaces"]) or [NAMESPACE]


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes LabelSelector matches `labels`."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if ((op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels)
                or (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values)):
            return False
    return True


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """helm's cache/config/data dirs; first proves the binary is the pinned helm v3.10.1."""
    assert helm_sha256() == HELM_SHA256, "node_modules helm is not the pinned helm v3.10.1 build"
    return tmp_path_factory.mktemp("helm-home")


@pytest.fixture(scope="module")
def rendered(helm_home: Path) -> Iterator[dict[Path, list[dict[str, Any]]]]:
    """Every scenario rendered once, CRDs included."""
    yield {path: template(helm_home, [path]) for path in CI_VALUES}


def test_helm_is_the_pinned_release(helm_home: Path) -> None:
    version = helm("version", "--short", home=helm_home).stdout.strip()
    assert version.startswith("v3.10.1+"), version
    assert helm_sha256() == HELM_SHA256


def test_every_scenario_has_a_values_file() -> None:
    assert {p.name for p in CI_VALUES} >= {"default-values.yaml", "multi-namespace-values.yaml",
                                           "all-namespaces-values.yaml", "server-egress-values.yaml"}


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_lint_strict(helm_home: Path, values_file: Path) -> None:
    proc = helm("lint", "--strict", str(CHART), "-f", str(values_file), home=helm_home, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_every_object_is_valid(rendered: dict[Path, list[dict[str, Any]]], values_file: Path) -> None:
    """Built-in kinds against Kubernetes 1.32's schemas (strict); nmcp's own against its CRDs; the
    two other custom kinds by shape."""
    problems = []
    for obj in rendered[values_file]:
        name = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        if obj["apiVersion"] == API_VERSION:
            problems += [f"{name}: {p.field}: {p.message}" for p in schema.validate(obj)[1]]
            continue
        if (obj["apiVersion"], obj["kind"]) in SCHEMAS:
            problems += [f"{name}: {err}" for err in shape_errors(obj)]
            continue
        try:
            kubernetes_validate.validate(obj, "1.32.0", strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{name}: {'.'.join(map(str, err.absolute_path))}: {err.message}")
    assert not problems, "\n".join(problems)


def test_shapes_reject_what_metacontroller_would_not_read() -> None:
    """The hand-written shapes fail on the mistakes they exist to catch."""
    good = {"apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
            "metadata": {"name": "x"},
            "spec": {"parentResource": {"apiVersion": "nmcp.nwrx.io/v1", "resource": "mcppools"},
                     "hooks": {"sync": {"version": "v2", "webhook": {"url": "http://h.ns:8000/pool/sync"}}}}}
    assert shape_errors(good) == []
    old_syntax = copy.deepcopy(good)  # the GCP-era `timeoutSeconds`, which the current schema prunes
    old_syntax["spec"]["hooks"]["sync"]["webhook"]["timeoutSeconds"] = 10
    no_target = copy.deepcopy(good)
    no_target["spec"]["hooks"]["sync"]["webhook"] = {"path": "/pool/sync"}
    bad_method = copy.deepcopy(good)
    bad_method["spec"]["childResources"] = [{"apiVersion": "v1", "resource": "pods",
                                             "updateStrategy": {"method": "Rolling"}}]
    for broken in (old_syntax, no_target, bad_method):
        assert shape_errors(broken), broken


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_rendered_crds_equal_the_crd_source(rendered: dict[Path, list[dict[str, Any]]], values_file: Path) -> None:
    got = {crd["metadata"]["name"]: crd for crd in by_kind(rendered[values_file], "CustomResourceDefinition")}
    want = {crd["metadata"]["name"]: crd for crd in (crds.load(resource) for resource in crds.FILES)}
    assert got == want


def test_chart_crd_files_are_copies_of_crds() -> None:
    """helm/sync-crds.sh keeps helm/nmcp/crds/ byte-identical to crds/; run it after a CRD change."""
    source = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    assert sorted(chart) == sorted(source), "run helm/sync-crds.sh"
    for name, text in source.items():
        assert chart[name] == text, f"helm/nmcp/crds/{name} differs from crds/{name}: run helm/sync-crds.sh"


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_controllers_call_the_rendered_hooks_service(rendered: dict[Path, list[dict[str, Any]]],
                                                     values_file: Path) -> None:
    objects = rendered[values_file]
    service = one(objects, "Service", HOOKS)
    deployment = one(objects, "Deployment", HOOKS)
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    # The Service reaches the hooks Pods, on the port they listen on.
    assert selects({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in [p["name"] for p in container["ports"]]
    controllers = by_kind(objects, "CompositeController")
    assert {c["spec"]["parentResource"]["resource"] for c in controllers} == {"mcppools", "mcpservers"}
    for controller in controllers:
        prefix = {"mcppools": "/pool/", "mcpservers": "/server/"}[controller["spec"]["parentResource"]["resource"]]
        assert set(controller["spec"]["hooks"]) == {"sync", "finalize", "customize"}
        for hook_name, hook in controller["spec"]["hooks"].items():
            assert hook["version"] == "v2"
            url = urlsplit(hook["webhook"]["url"])
            assert url.scheme == "http"
            assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}"
            assert url.port == port["port"]
            assert url.path == prefix + hook_name
            assert hook["webhook"]["timeout"] == values_of(values_file)["hooks"]["webhookTimeout"]


def _without_targets(controller: Mapping[str, Any]) -> dict[str, Any]:
    """A controller's spec with each webhook's URL cut to its path; host, port and timeout are values."""
    spec = copy.deepcopy(dict(controller["spec"]))
    for hook in spec["hooks"].values():
        webhook = hook["webhook"]
        webhook["url"] = urlsplit(webhook["url"]).path
        webhook.pop("timeout", None)
    return spec


def test_controllers_are_the_ones_in_metacontroller_dir(rendered: dict[Path, list[dict[str, Any]]]) -> None:
    """The chart's controllers and metacontroller/controllers.yaml must not drift apart."""
    source = [c for c in yaml.safe_load_all((ROOT / "metacontroller" / "controllers.yaml").read_text()) if c]
    chart = by_kind(rendered[CHART / "ci" / "default-values.yaml"], "CompositeController")
    assert {c["metadata"]["name"]: _without_targets(c) for c in chart} == \
           {c["metadata"]["name"]: _without_targets(c) for c in source}


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_pool_default_exists_in_every_served_namespace(rendered: dict[Path, list[dict[str, Any]]],
                                                       values_file: Path) -> None:
    """The rule `nmcp up` follows too: a server that names no pool runs in pool `default`."""
    namespaces = served_namespaces(values_of(values_file))
    pools = by_kind(rendered[values_file], "MCPPool")
    expected = [] if namespaces == ["*"] else namespaces  # no list of namespaces to put it in
    assert sorted(p["metadata"]["namespace"] for p in pools) == sorted(expected)
    for pool in pools:
        assert pool["metadata"]["name"] == "default"
        read = read_pool(schema.validate(pool)[0] or {})
        assert (read.max_active, read.max_idle, read.problems) == (10, 2, ())


def test_pool_default_can_be_left_to_the_user(helm_home: Path) -> None:
    objects = template(helm_home, sets={"defaultPool.create": "false"})
    assert by_kind(objects, "MCPPool") == []


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_gateway_rbac_is_least_privilege_in_served_namespaces(rendered: dict[Path, list[dict[str, Any]]],
                                                              values_file: Path) -> None:
    objects = rendered[values_file]
    namespaces = served_namespaces(values_of(values_file))
    (container,) = one(objects, "Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NMCP_NAMESPACES"] == ",".join(namespaces)
    subject = {"kind": "ServiceAccount", "name": GATEWAY, "namespace": NAMESPACE}
    if namespaces == ["*"]:
        roles = [one(objects, "ClusterRole", GATEWAY)]
        (binding,) = [b for b in by_kind(objects, "ClusterRoleBinding") if b["metadata"]["name"] == GATEWAY]
        bindings = [binding]
        assert not [r for r in by_kind(objects, "Role") if r["metadata"]["name"] == GATEWAY]
    else:
        roles = by_kind(objects, "Role")
        bindings = by_kind(objects, "RoleBinding")
        assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(namespaces)
        assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(namespaces)
        assert not [r for r in by_kind(objects, "ClusterRole") if r["metadata"]["name"] == GATEWAY]
    for binding in bindings:
        assert binding["subjects"] == [subject]
        assert binding["roleRef"]["name"] == GATEWAY
    granted = {(group, resource, verb) for role in roles for rule in role["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}
    read = {"get", "list", "watch"}
    assert granted == (
        {("nmcp.nwrx.io", r, v) for r in ("mcpservers", "mcppools", "mcpaccesspolicies") for v in read}
        | {("nmcp.nwrx.io", "mcpservers", "patch")}
        | {("", "pods", v) for v in read}
        | {("", "pods/attach", "create"), ("", "pods/attach", "get"), ("", "pods/log", "get")}
    )
    # Verifying in-cluster callers' tokens (TokenReview, cluster-scoped): exactly that, and only then.
    tokenreview = f"{NAMESPACE}-{GATEWAY}-tokenreview"
    review_role = one(objects, "ClusterRole", tokenreview)
    assert review_role["rules"] == [{"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
                                     "verbs": ["create"]}]
    assert one(objects, "ClusterRoleBinding", tokenreview)["subjects"] == [subject]
    assert env["NMCP_AUTH_TOKENREVIEW_AUDIENCES"] == "nmcp"
    assert one(objects, "ServiceAccount", HOOKS)["automountServiceAccountToken"] is False


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_network_policies(rendered: dict[Path, list[dict[str, Any]]], values_file: Path) -> None:
    objects, values = rendered[values_file], values_of(values_file)
    policies = by_kind(objects, "NetworkPolicy")
    if not values["networkPolicy"]["enabled"]:
        assert policies == []
        return
    hooks_pod = one(objects, "Deployment", HOOKS)["spec"]["template"]["metadata"]["labels"]
    gateway_pod = one(objects, "Deployment", GATEWAY)["spec"]["template"]["metadata"]["labels"]
    metacontroller_pod = dict(values["metacontroller"]["podLabels"])
    ns_labels = {ns: {"kubernetes.io/metadata.name": ns} for ns in
                 (NAMESPACE, values["metacontroller"]["namespace"], "elsewhere")}

    def admits(policy: Mapping[str, Any], ns: str, labels: Mapping[str, str]) -> bool:
        return any(selects(peer.get("namespaceSelector", {}), ns_labels[ns]) and selects(peer.get("podSelector", {}),
                                                                                          labels)
                   for rule in policy["spec"].get("ingress", []) for peer in rule.get("from", []))

    # Hooks: Metacontroller and nothing else, not even the gateway.
    (hooks_policy,) = [p for p in policies if selects(p["spec"]["podSelector"], hooks_pod)]
    assert admits(hooks_policy, values["metacontroller"]["namespace"], metacontroller_pod)
    assert not admits(hooks_policy, NAMESPACE, gateway_pod)
    assert not admits(hooks_policy, "elsewhere", metacontroller_pod)

    # MCP server Pods, labelled as the hooks label them: only the gateway, in every served namespace.
    server = read_server(yaml.safe_load((ROOT / "examples" / "MCPServer.default.yaml").read_text()))
    server_pod = server_labels(server)
    server_policies = [p for p in policies if selects(p["spec"]["podSelector"], server_pod)
                       and "Ingress" in p["spec"]["policyTypes"]]
    namespaces = served_namespaces(values)
    assert not any(selects(p["spec"]["podSelector"], hooks_pod) or selects(p["spec"]["podSelector"], gateway_pod)
                   for p in server_policies)
    if namespaces == ["*"]:
        assert server_policies == []  # nowhere to put them; NOTES says so
        return
    assert sorted(p["metadata"]["namespace"] for p in server_policies) == sorted(namespaces)
    for policy in server_policies:
        assert admits(policy, NAMESPACE, gateway_pod)
        assert not admits(policy, NAMESPACE, hooks_pod)
        assert not admits(policy, "elsewhere", gateway_pod)
    egress = [p for p in policies
              if selects(p["spec"]["podSelector"], server_pod) and p["spec"]["policyTypes"] == ["Egress"]]
    if not values["networkPolicy"]["serverEgress"]["enabled"]:
        assert egress == []
        return
    assert sorted(p["metadata"]["namespace"] for p in egress) == sorted(namespaces)
    for policy in egress:
        rules = policy["spec"]["egress"]
        if values["networkPolicy"]["serverEgress"]["allowDNS"]:
            dns, *rules = rules
            assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
        assert rules == values["networkPolicy"]["serverEgress"]["rules"]


def test_server_egress_closed(helm_home: Path) -> None:
    """serverEgress with neither DNS nor rules: server Pods may reach nothing."""
    sets = {"gateway.namespaces": "{team-a}", "networkPolicy.serverEgress.enabled": "true",
            "networkPolicy.serverEgress.allowDNS": "false"}
    (egress,) = [p for p in by_kind(template(helm_home, sets=sets), "NetworkPolicy")
                 if p["spec"]["policyTypes"] == ["Egress"]]
    assert egress["metadata"]["namespace"] == "team-a"
    assert egress["spec"]["egress"] == []


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_service_monitor_scrapes_the_gateway(rendered: dict[Path, list[dict[str, Any]]], values_file: Path) -> None:
    objects, values = rendered[values_file], values_of(values_file)
    monitors = by_kind(objects, "ServiceMonitor")
    if not values["serviceMonitor"]["enabled"]:
        assert monitors == []
        return
    (monitor,) = monitors
    service = one(objects, "Service", GATEWAY)
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert not selects(monitor["spec"]["selector"], one(objects, "Service", HOOKS)["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert endpoint["path"] == "/metrics"
    assert values["serviceMonitor"]["labels"].items() <= monitor["metadata"]["labels"].items()


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_pods_meet_the_restricted_pod_security_standard(rendered: dict[Path, list[dict[str, Any]]],
                                                        values_file: Path) -> None:
    for deployment in by_kind(rendered[values_file], "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert "add" not in ctx["capabilities"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert {"livenessProbe", "readinessProbe", "resources"} <= container.keys()


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_rendered_commands_are_accepted_by_the_cli(rendered: dict[Path, list[dict[str, Any]]],
                                                   values_file: Path) -> None:
    """The args the chart passes parse with the real `nmcp` CLI (`--help` stops before running)."""
    for deployment in by_kind(rendered[values_file], "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        proc = subprocess.run([str(VENV_BIN / "nmcp"), *container["args"], "--help"], check=False,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{deployment['metadata']['name']}: {container['args']}\n{proc.stderr}"
        port = container["ports"][0]["containerPort"]
        assert f"0.0.0.0:{port}" in container["args"]
        probes = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
        assert [p["path"] for p in probes] == ["/healthz", "/readyz"]


def test_hooks_have_two_replicas_and_a_disruption_budget(rendered: dict[Path, list[dict[str, Any]]]) -> None:
    objects = rendered[CHART / "ci" / "default-values.yaml"]
    deployment = one(objects, "Deployment", HOOKS)
    assert deployment["spec"]["replicas"] == 2
    pdb = one(objects, "PodDisruptionBudget", HOOKS)
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert selects(pdb["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert one(objects, "Deployment", GATEWAY)["spec"]["replicas"] == 1


def test_pdb_api_version_follows_the_cluster(helm_home: Path) -> None:
    """policy/v1 exists from Kubernetes 1.21; the test API server (1.20) needs v1beta1."""
    old = template(helm_home, extra=["--kube-version", "1.20.2"])
    assert one(old, "PodDisruptionBudget", HOOKS)["apiVersion"] == "policy/v1beta1"


def test_image_reference(helm_home: Path) -> None:
    def image(sets: dict[str, str]) -> set[str]:
        objects = template(helm_home, sets=sets)
        return {c["image"] for d in by_kind(objects, "Deployment") for c in d["spec"]["template"]["spec"]["containers"]}

    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert image({}) == {f"nmcp:{app_version}"}
    assert image({"image.repository": "reg.example/nmcp", "image.tag": "1.2.3"}) == {"reg.example/nmcp:1.2.3"}
    digest = "sha256:" + "a" * 64
    assert image({"image.tag": "1.2.3", "image.digest": digest}) == {f"nmcp@{digest}"}


def test_release_name_prefixes_every_name(helm_home: Path) -> None:
    out = helm("template", "team", str(CHART), "--namespace", "mcp", home=helm_home).stdout
    objects = [o for o in yaml.safe_load_all(out) if o]
    assert {o["metadata"]["name"] for o in by_kind(objects, "Deployment")} == {"team-nmcp-hooks", "team-nmcp-gateway"}
    for controller in by_kind(objects, "CompositeController"):
        assert urlsplit(controller["spec"]["hooks"]["sync"]["webhook"]["url"]).netloc == "team-nmcp-hooks.mcp:8000"


@pytest.mark.parametrize(("sets", "message"), [
    pytest.param({"gateway.replicas": "2"}, "sessionAffinity=ClientIP", id="replicas-without-affinity"),
    pytest.param({"gateway.namespaces": "{*,team-a}"}, "cannot be combined", id="star-and-names"),
    pytest.param({"gateway.namespaces": "{team-a,team-a}"}, "twice", id="duplicate-namespace"),
    pytest.param({"hooks.podDisruptionBudget.minAvailable": "2"}, "lower than hooks.replicas", id="pdb-blocks-drain"),
    pytest.param({"hooks.replicas": "0"}, "at least 1", id="no-hooks"),
    pytest.param({"gateway.service.sessionAffinity": "Cookie"}, "None or ClientIP", id="bad-affinity"),
    pytest.param({"metacontroller.rbac.bind": "true"}, "needs metacontroller.rbac.create", id="bind-nothing"),
    pytest.param({"image.repository": ""}, "image.repository is empty", id="no-image"),
    pytest.param({"gateway.namespaces": "{*}", "networkPolicy.serverEgress.enabled": "true"},
                 "serverEgress needs gateway.namespaces", id="egress-without-namespaces"),
])
def test_impossible_values_are_refused(helm_home: Path, sets: dict[str, str], message: str) -> None:
    assert message in template_error(helm_home, sets)


def test_several_gateway_replicas_render_with_pinned_sessions(helm_home: Path) -> None:
    for sets in ({"gateway.service.sessionAffinity": "ClientIP"}, {"gateway.stickySessionsUpstream": "true"}):
        objects = template(helm_home, sets={"gateway.replicas": "3", **sets})
        deployment = one(objects, "Deployment", GATEWAY)
        assert deployment["spec"]["replicas"] == 3
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"


def test_metacontroller_cluster_role_covers_nmcp_resources(rendered: dict[Path, list[dict[str, Any]]]) -> None:
    objects = rendered[CHART / "ci" / "multi-namespace-values.yaml"]
    role = one(objects, "ClusterRole", f"{FULLNAME}-metacontroller")
    binding = one(objects, "ClusterRoleBinding", f"{FULLNAME}-metacontroller")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "metacontroller-metacontroller-helm",
                                    "namespace": "metacontroller"}]
    cluster_roles = by_kind(rendered[CHART / "ci" / "default-values.yaml"], "ClusterRole")
    # Only the gateway's TokenReview role (test_gateway_rbac_is_least_privilege_in_served_namespaces).
    assert [r["metadata"]["name"] for r in cluster_roles] == [f"{NAMESPACE}-{GATEWAY}-tokenreview"]


def _comment_above(lines: list[str], index: int) -> list[str]:
    """The contiguous comment lines right above line `index`."""
    block = []
    for j in range(index - 1, -1, -1):
        if not lines[j].strip().startswith("#"):
            break
        block.append(lines[j].strip())
    return block


def _parent(lines: list[str], index: int) -> int | None:
    """The line of the key that line `index` is nested in."""
    indent = len(lines[index]) - len(lines[index].lstrip())
    for j in range(index - 1, -1, -1):
        line = lines[j]
        if line.strip() and not line.strip().startswith("#") and len(line) - len(line.lstrip()) < indent:
            return j
    return None


def test_values_file_documents_every_key() -> None:
    """STYLE §14: every value has a comment; a key inside a documented default (`# --` above an
    ancestor, e.g. resources.requests.cpu) is covered by it, and a plain block heading by its keys."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped or stripped.endswith(":"):
            continue
        if _comment_above(lines, i):
            continue
        ancestor = _parent(lines, i)
        while ancestor is not None and not any(c.startswith("# --") for c in _comment_above(lines, ancestor)):
            ancestor = _parent(lines, ancestor)
        if ancestor is None:
            undocumented.append(f"values.yaml:{i + 1}: {stripped}")
    assert not undocumented, "\n".join(undocumented)
