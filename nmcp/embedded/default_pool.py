"""Pool `default`, provided where no manifest declares it.

The rule, the same on every runtime: a server runs in the pool its `spec.pool` names (`default`
when unset), in its own namespace; a pool that does not exist there makes it Degraded with reason
PoolNotFound (hooks.lifecycle). Pool `default` always exists: the Helm chart ships one in each
namespace the gateway serves (values `defaultPool`), and `nmcp up` adds one with the CRD's
defaults (maxActive 10, maxIdle 2, defaultIdleTimeout 5m) to each namespace where a server uses
it and no manifest declares it. Pure: a load result in, a load result out.
"""

from __future__ import annotations

from nmcp.model import schema
from nmcp.model.manifests import LoadResult, Manifest
from nmcp.model.resources import API_VERSION

DEFAULT_POOL = "default"
PROVIDED = "nmcp up (no manifest declares pool default)"


def _uses_default(manifest: Manifest) -> bool:
    spec = manifest.obj.get("spec") or {}
    return str(spec.get("pool") or DEFAULT_POOL) == DEFAULT_POOL


def with_default_pools(loaded: LoadResult) -> LoadResult:
    """`loaded` plus a pool `default` in each namespace whose servers use it and that declares none."""
    declared = {m.namespace for m in loaded.of_kind("MCPPool") if m.name == DEFAULT_POOL}
    needed = sorted({m.namespace for m in loaded.of_kind("MCPServer") if _uses_default(m)} - declared)
    provided = []
    for namespace in needed:
        obj, problems = schema.validate({"apiVersion": API_VERSION, "kind": "MCPPool",
                                         "metadata": {"name": DEFAULT_POOL, "namespace": namespace}}, namespace)
        if obj is None:  # the CRD's own defaults always validate; a failure here is a bug worth seeing
            raise ValueError(f"the provided pool default does not validate: {problems}")
        provided.append(Manifest("MCPPool", namespace, DEFAULT_POOL, obj, PROVIDED, 1))
    return LoadResult(loaded.manifests + tuple(provided), loaded.problems)
