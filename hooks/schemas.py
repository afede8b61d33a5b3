"""The shapes of Metacontroller's hook requests and responses.

Marshmallow schemas check a request before any hook logic runs: a body that is not the shape
Metacontroller sends (no `parent`, a string where a list belongs, an unknown transport type) is
rejected with every offending field named. Only shape is checked here. A spec that has the right
shape but cannot run (a negative timeout, a missing image, a pool that does not exist) is a
business outcome: the hook answers 200 and says so in a condition.

`children` and `related` maps are only checked to be maps of objects: their keys differ between
hook versions (v1 `name`, v2 `namespace/name`) and the hooks never read them. Related MCPServers
are not validated either: one sibling's bad spec must not fail its pool's sync (the pool just
does not admit it).

The TypedDicts document what the pure functions take and return.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate, validates

from hooks.lifecycle import RUNTIME_ANNOTATION, RUNTIMES
from nmcp.model.resources import TRANSPORTS

# --- what the pure functions take and return -----------------------------------------------------

ObjectMap = dict[str, dict[str, dict[str, Any]]]  # {"Kind.group/version": {key: object}}


class SyncRequest(TypedDict):
    controller: dict[str, Any]
    parent: dict[str, Any]
    children: ObjectMap
    related: ObjectMap
    finalizing: bool


class SyncResponse(TypedDict):
    status: dict[str, Any]
    children: list[dict[str, Any]]
    resyncAfterSeconds: NotRequired[float]
    finalized: NotRequired[bool]


class CustomizeRequest(TypedDict):
    controller: dict[str, Any]
    parent: dict[str, Any]


class RelatedResourceRule(TypedDict):
    apiVersion: str
    resource: str
    namespace: NotRequired[str]
    names: NotRequired[list[str]]
    labelSelector: NotRequired[dict[str, Any]]


class CustomizeResponse(TypedDict):
    relatedResources: list[RelatedResourceRule]


# --- validation ---------------------------------------------------------------------------------


class IntOrString(fields.Field):
    """A Kubernetes int-or-string value such as a duration (`60`, `"60s"`)."""

    default_error_messages = {"invalid": "expected an integer or a string such as 60s"}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.make_error("invalid")
        return value


class ObjectMapField(fields.Field):
    """`children` / `related`: a map of type keys to maps of objects. Keys are never interpreted."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise ValidationError("expected an object mapping type keys (e.g. Pod.v1) to objects")
        errors: dict[str, Any] = {}
        for type_key, objects in value.items():
            if not isinstance(objects, dict):
                errors[type_key] = ["expected an object mapping names to objects"]
                continue
            bad = {key: ["expected an object"] for key, obj in objects.items() if not isinstance(obj, dict)}
            if bad:
                errors[type_key] = bad
        if errors:
            raise ValidationError(errors)
        return value


class _Open(Schema):
    """Objects Kubernetes may extend: unknown keys are kept as they are."""

    class Meta:
        unknown = INCLUDE


class MetadataSchema(_Open):
    name = fields.String(required=True, validate=validate.Length(min=1))
    namespace = fields.String()
    uid = fields.String()
    generation = fields.Integer(strict=True)
    labels = fields.Dict(keys=fields.String(), values=fields.String())
    annotations = fields.Dict(keys=fields.String(), values=fields.String())
    creationTimestamp = fields.String(allow_none=True)
    deletionTimestamp = fields.String(allow_none=True)


class ControllerMetadataSchema(_Open):
    annotations = fields.Dict(keys=fields.String(), values=fields.String())

    @validates("annotations")
    def _runtime(self, value: Mapping[str, str], **_: Any) -> None:
        runtime = value.get(RUNTIME_ANNOTATION)
        if runtime is not None and runtime not in RUNTIMES:
            raise ValidationError({RUNTIME_ANNOTATION: [f"must be one of: {', '.join(RUNTIMES)}"]})


class ControllerSchema(_Open):
    metadata = fields.Nested(ControllerMetadataSchema)


class EnvVarSchema(_Open):
    name = fields.String(required=True, validate=validate.Length(min=1))
    value = fields.String()
    valueFrom = fields.Dict()


class TransportSchema(_Open):
    type = fields.String(validate=validate.OneOf(TRANSPORTS))
    port = fields.Integer(strict=True)
    path = fields.String()


class ServerSpecSchema(_Open):
    pool = fields.String()
    image = fields.String()
    command = fields.List(fields.String())
    args = fields.List(fields.String())
    env = fields.List(fields.Nested(EnvVarSchema))
    transport = fields.Nested(TransportSchema)
    idleTimeout = IntOrString()
    startTimeout = IntOrString()
    isolation = fields.String()
    resources = fields.Dict()
    securityContext = fields.Dict()


class PoolSpecSchema(_Open):
    maxActive = fields.Integer(strict=True)
    maxIdle = fields.Integer(strict=True)
    defaultIdleTimeout = IntOrString()
    defaultResources = fields.Dict()


def _parent(spec: type[Schema]) -> type[Schema]:
    return type(f"Parent{spec.__name__}", (_Open,), {
        "metadata": fields.Nested(MetadataSchema, required=True),
        "spec": fields.Nested(spec),
        "status": fields.Dict(allow_none=True),
    })


class _Request(Schema):
    """A hook request; top-level keys Metacontroller may add later are dropped, not rejected."""

    class Meta:
        unknown = EXCLUDE

    controller = fields.Nested(ControllerSchema, load_default=dict)


def _sync_schema(parent: type[Schema]) -> Schema:
    cls = type("SyncRequestSchema", (_Request,), {
        "parent": fields.Nested(parent, required=True),
        "children": ObjectMapField(load_default=dict),
        "related": ObjectMapField(load_default=dict),
        "finalizing": fields.Boolean(load_default=False),
    })
    return cls()


def _customize_schema(parent: type[Schema]) -> Schema:
    cls = type("CustomizeRequestSchema", (_Request,), {"parent": fields.Nested(parent, required=True)})
    return cls()


_server_parent = _parent(ServerSpecSchema)
_pool_parent = _parent(PoolSpecSchema)

# One instance each: marshmallow schemas are safe to reuse across threads for `load`.
SCHEMAS: dict[tuple[str, str], Schema] = {
    ("pool", "sync"): _sync_schema(_pool_parent),
    ("pool", "customize"): _customize_schema(_pool_parent),
    ("server", "sync"): _sync_schema(_server_parent),
    ("server", "customize"): _customize_schema(_server_parent),
}


def _join(prefix: str, key: Any) -> str:
    if key == "_schema":  # an error about the object itself
        return prefix or "request"
    return f"{prefix}.{key}" if prefix else str(key)


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as {"parent.spec.transport.type": ["..."]}."""
    if isinstance(messages, Mapping):
        flat: dict[str, list[str]] = {}
        for key, value in messages.items():
            flat.update(flatten_errors(value, _join(prefix, key)))
        return flat
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix or "request": list(messages)}
    if isinstance(messages, list):
        flat = {}
        for item in messages:
            flat.update(flatten_errors(item, prefix))
        return flat
    return {prefix or "request": [str(messages)]}
