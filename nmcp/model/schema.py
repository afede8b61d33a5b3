"""Validate and default MCPServer / MCPPool manifests against the CRD schema, without a cluster.

`nmcp up` must accept exactly what `kubectl apply` would: the same defaults applied, the same
values rejected, unknown fields reported (kubectl's strict field validation). The schema is read
from `crds/`; this module only translates Kubernetes' structural-schema dialect into JSON Schema
(`x-kubernetes-int-or-string`, `x-kubernetes-preserve-unknown-fields`, pruning of unknown fields).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema

import crds
from nmcp.model.resources import API_VERSION, shown

RESOURCES_BY_KIND = {kind: resource for resource, kind in crds.KINDS.items()}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Problem:
    """One reason a manifest is invalid: `field` is a dotted path such as `spec.transport.type`."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "default"}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


@cache
def _validator(resource: str) -> jsonschema.protocols.Validator:
    schema = _to_json_schema(crds.openapi_schema(resource))
    # metadata and the type fields are checked by _check_envelope; status is the controller's.
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k == "spec"}
    schema["additionalProperties"] = True
    return jsonschema.Draft7Validator(schema)


def _apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    for name, sub in (schema.get("properties") or {}).items():
        if name not in value and "default" in sub:
            value[name] = copy.deepcopy(sub["default"])
        if name in value:
            value[name] = _apply_defaults(sub, value[name])
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for name in value:
            value[name] = _apply_defaults(extra, value[name])
    return value


def _check_envelope(doc: dict[str, Any], namespace: str) -> list[Problem]:
    problems: list[Problem] = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(Problem("apiVersion", f"expected {API_VERSION}, got {doc.get('apiVersion')!r}"))
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return [*problems, Problem("metadata", "missing; a manifest needs metadata.name")]
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        problems.append(Problem("metadata.name", "missing"))
    elif len(name) > 253 or not _NAME.match(name):
        problems.append(Problem("metadata.name", f"{name!r} is not a lowercase DNS name (a-z, 0-9, '-', '.')"))
    ns = meta.get("namespace", namespace)
    if not isinstance(ns, str) or len(ns) > 63 or not _NAME.match(ns) or "." in ns:
        problems.append(Problem("metadata.namespace", f"{ns!r} is not a valid namespace name"))
    return problems


def _field_path(error: jsonschema.ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in allowed)
        if unknown:
            path = f"{path}.{unknown[0]}" if path else unknown[0]
    elif error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        path = f"{path}.{missing}" if path and missing else (missing or path)
    return path or "(document)"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return "unknown field"
    if error.validator == "enum":
        return f"unsupported value {error.instance!r}: supported values: {', '.join(map(repr, error.validator_value))}"
    if error.validator == "pattern":
        return f"invalid value {shown(error.instance)}: should match {error.validator_value!r}"
    if error.validator == "minimum":
        return f"should be greater than or equal to {error.validator_value}, got {shown(error.instance)}"
    if error.validator == "maximum":
        return f"should be less than or equal to {error.validator_value}, got {shown(error.instance)}"
    # jsonschema's own messages quote the whole value: a hostile one must not flood the log.
    return error.message if len(error.message) <= 200 else f"{error.message[:200]}..."


def validate(doc: Any, namespace: str = "default") -> tuple[dict[str, Any] | None, list[Problem]]:
    """Check one manifest; return it with defaults applied (None when invalid) and the problems.

    The document given is never modified.
    """
    if not isinstance(doc, dict):
        return None, [Problem("(document)", f"expected a mapping, got {type(doc).__name__}")]
    kind = doc.get("kind")
    if kind not in RESOURCES_BY_KIND:
        return None, [Problem("kind", f"expected one of {', '.join(sorted(RESOURCES_BY_KIND))}, got {kind!r}")]
    resource = RESOURCES_BY_KIND[kind]
    problems = _check_envelope(doc, namespace)
    obj = copy.deepcopy(doc)
    if not isinstance(obj.get("spec", {}), dict):
        problems.append(Problem("spec", "expected a mapping"))
    else:
        obj.setdefault("spec", {})
        _apply_defaults(crds.openapi_schema(resource), obj)
        errors = sorted(_validator(resource).iter_errors(obj), key=lambda e: list(e.absolute_path))
        problems += [Problem(_field_path(e), _message(e)) for e in errors]
    if problems:
        return None, problems
    obj["metadata"].setdefault("namespace", namespace)
    return obj, []
