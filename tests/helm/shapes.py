"""Schemas for the two rendered kinds that kubernetes-validate has no schema for.

`kubernetes_validate` knows the built-in kinds only. Metacontroller's CompositeController and the
Prometheus Operator's ServiceMonitor are custom resources whose CRDs cannot be downloaded here,
so these JSON schemas state their shape as documented, strictly (`additionalProperties: false`
everywhere), so that a misspelt or misplaced field fails the same way `strict=True` does for the
built-in kinds:

- CompositeController: every field of `spec` and of a hook in
  ../shared/reference/metacontroller.md §1.2 and §1.4 (read from Metacontroller v4.17.2's
  `pkg/apis/metacontroller/v1alpha1/types.go`), with the enum of update methods, hook versions and
  the rule that a webhook names either a `url` or a `service` with a `path`.
- ServiceMonitor (`monitoring.coreos.com/v1`): the subset of its spec that a chart sets for one
  HTTP endpoint: `selector`, `namespaceSelector`, `endpoints[].{port, path, interval,
  scrapeTimeout, scheme, honorLabels}`, `jobLabel`; durations in Prometheus' own syntax.
"""

from __future__ import annotations

from typing import Any

import jsonschema

_GO_DURATION = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
_PROM_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"


def _obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_LABEL_SELECTOR = _obj({
    "matchLabels": _STRING_MAP,
    "matchExpressions": {"type": "array", "items": _obj({
        "key": {"type": "string"},
        "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
        "values": {"type": "array", "items": {"type": "string"}},
    }, ("key", "operator"))},
})
_METADATA = _obj({
    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
    "namespace": {"type": "string"},
    "labels": _STRING_MAP,
    "annotations": _STRING_MAP,
}, ("name",))
_SECRET_KEY = _obj({"name": {"type": "string"}, "namespace": {"type": "string"}, "key": {"type": "string"}},
                   ("name", "namespace", "key"))
_SECRET_REF = _obj({"name": {"type": "string"}, "namespace": {"type": "string"}}, ("name", "namespace"))
_TLS_AUTH = {
    "caBundle": _obj({"inline": {"type": "string"}, "secretRef": _SECRET_KEY, "configMapRef": _SECRET_KEY}),
    "clientTLS": _obj({"secretRef": _SECRET_REF, "certKey": {"type": "string"}, "privateKeyKey": {"type": "string"}},
                      ("secretRef",)),
    "authorization": _obj({"type": {"type": "string"}, "secretRef": _SECRET_KEY}, ("secretRef",)),
    "basicAuth": _obj({"secretRef": _SECRET_REF, "usernameKey": {"type": "string"},
                       "passwordKey": {"type": "string"}}, ("secretRef",)),
}
_WEBHOOK = {
    **_obj({
        "url": {"type": "string", "pattern": r"^https?://[^/\s]+(/\S*)?$"},
        "path": {"type": "string", "pattern": "^/"},
        "service": _obj({"name": {"type": "string"}, "namespace": {"type": "string"},
                         "port": {"type": "integer"}, "protocol": {"enum": ["http", "https"]}},
                        ("name", "namespace")),
        "timeout": {"type": "string", "pattern": _GO_DURATION},
        "responseUnMarshallMode": {"enum": ["loose", "strict"]},
        "etag": _obj({"enabled": {"type": "boolean"}, "cacheTimeoutSeconds": {"type": "integer"},
                      "cacheCleanupSeconds": {"type": "integer"}}),
        **_TLS_AUTH,
    }),
    # `url` overrides service+path; without a url both service and path are needed.
    "anyOf": [{"required": ["url"]}, {"required": ["service", "path"]}],
}
_HOOK = _obj({"version": {"enum": ["v1", "v2"]}, "webhook": _WEBHOOK}, ("webhook",))

COMPOSITE_CONTROLLER = _obj({
    "apiVersion": {"const": "metacontroller.k8s.io/v1alpha1"},
    "kind": {"const": "CompositeController"},
    "metadata": _METADATA,
    "spec": _obj({
        "parentResource": _obj({
            "apiVersion": {"type": "string", "minLength": 1},
            "resource": {"type": "string", "pattern": "^[a-z0-9.-]+$"},
            "labelSelector": _LABEL_SELECTOR,
            "revisionHistory": _obj({"fieldPaths": {"type": "array", "items": {"type": "string"}}}),
            "ignoreStatusChanges": {"type": "boolean"},
        }, ("apiVersion", "resource")),
        "childResources": {"type": "array", "items": _obj({
            "apiVersion": {"type": "string", "minLength": 1},
            "resource": {"type": "string", "pattern": "^[a-z0-9.-]+$"},
            "updateStrategy": _obj({
                "method": {"enum": ["OnDelete", "Recreate", "InPlace", "RollingRecreate", "RollingInPlace"]},
                "statusChecks": _obj({"conditions": {"type": "array", "items": _obj({
                    "type": {"type": "string"}, "status": {"type": "string"}, "reason": {"type": "string"},
                }, ("type",))}}),
            }),
        }, ("apiVersion", "resource"))},
        # preUpdateChild/postUpdateChild exist in types.go but nothing calls them: not accepted here.
        "hooks": _obj({"sync": _HOOK, "finalize": _HOOK, "customize": _HOOK}, ("sync",)),
        "resyncPeriodSeconds": {"type": "integer", "minimum": 1},
        "generateSelector": {"type": "boolean"},
        "endpointConfigs": {"type": "array", "items": _obj({"host": {"type": "string"}, **_TLS_AUTH}, ("host",))},
    }, ("parentResource", "hooks")),
}, ("apiVersion", "kind", "metadata", "spec"))

SERVICE_MONITOR = _obj({
    "apiVersion": {"const": "monitoring.coreos.com/v1"},
    "kind": {"const": "ServiceMonitor"},
    "metadata": _METADATA,
    "spec": _obj({
        "selector": _LABEL_SELECTOR,
        "namespaceSelector": _obj({"any": {"type": "boolean"},
                                   "matchNames": {"type": "array", "items": {"type": "string"}}}),
        "jobLabel": {"type": "string"},
        "endpoints": {"type": "array", "minItems": 1, "items": _obj({
            "port": {"type": "string"},
            "path": {"type": "string", "pattern": "^/"},
            "scheme": {"enum": ["http", "https"]},
            "interval": {"type": "string", "pattern": _PROM_DURATION},
            "scrapeTimeout": {"type": "string", "pattern": _PROM_DURATION},
            "honorLabels": {"type": "boolean"},
        })},
    }, ("selector", "endpoints")),
}, ("apiVersion", "kind", "metadata", "spec"))

SCHEMAS = {
    ("metacontroller.k8s.io/v1alpha1", "CompositeController"): COMPOSITE_CONTROLLER,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}


def shape_errors(obj: dict[str, Any]) -> list[str]:
    """Every way `obj` departs from its kind's shape ("" path means the object itself)."""
    schema = SCHEMAS[(obj["apiVersion"], obj["kind"])]
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(str(p) for p in err.absolute_path)}: {err.message}" for err in validator.iter_errors(obj)]
