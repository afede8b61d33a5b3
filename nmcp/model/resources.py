"""The resource model shared by the hooks, the gateway and `nmcp up`.

MCPServer and MCPPool arrive as plain dicts (a webhook body, an API response, a YAML file); this
module reads them into small frozen views with their defaults resolved, so that no other module
re-parses a duration or guesses a default. It also names the annotations through which the
gateway signals demand: Metacontroller owns `.status`, so the gateway never writes it.

Pure: no I/O, no clock reads, no Flask, gevent or requests.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nmcp.model.quantity import canonical_quantity

GROUP = "nmcp.nwrx.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

# Demand and activity, written by the gateway as annotations on the MCPServer (RFC 3339 times).
ANN_REQUESTED_AT = f"{GROUP}/requested-at"  # a client needs the server running
ANN_LAST_ACTIVE_AT = f"{GROUP}/last-active-at"  # the server served a request
ANN_STOP_REQUESTED_AT = f"{GROUP}/stop-requested-at"  # someone asked for it to stop
ANN_SESSIONS = f"{GROUP}/sessions"  # open client sessions (an integer)
# Isolated servers (`isolation: session | identity`): the instances clients need, a JSON map of
# instance key -> {"requestedAt", "lastActiveAt", "spare"}. The keys are the gateway's (a random one
# per session, a hash of the caller's subject per identity); each is one Pod the pool admits. A
# spare (`"spare": true`) is started ahead of any client, for the next new session to take.
ANN_INSTANCES = f"{GROUP}/instances"

# Written by the pool on the Pods it makes: the request a Pod answers, and the spec it runs.
ANN_ANSWERS_REQUEST = f"{GROUP}/answers-request"
ANN_SPEC_HASH = f"{GROUP}/spec-hash"

# Labels on the Pods and Services made for a server.
LABEL_SERVER = f"{GROUP}/server"
LABEL_POOL = f"{GROUP}/pool"
LABEL_INSTANCE = f"{GROUP}/instance"  # on the Pod of one instance of an isolated server

TRANSPORTS = ("stdio", "sse", "streamable-http")
ISOLATIONS = ("shared", "session", "identity")
DEFAULT_PATHS = {"sse": "/sse", "streamable-http": "/mcp"}

# Used only when the CRD's defaults were not applied (an old object, a hand-written fixture).
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_START_TIMEOUT = 120.0

# The largest values nmcp takes (the CRDs cap them too: `maximum`, bounded patterns). Beyond them
# a value is a typo or an attack, and the time arithmetic of the hooks would overflow: every
# deadline is a time plus at most one duration, and `parse_time` only reads years up to 9000.
MAX_DURATION = 365 * 24 * 3600.0  # one year: 8760h or 31536000 seconds
MAX_DURATION_TEXT = "8760h (one year)"
MAX_COUNT = 100_000  # maxActive, maxIdle
_MAX_DURATION_CHARS = 100  # the CRD pattern allows 84; longer text is no duration (and is not cached)
_YEARS = (1900, 9000)  # annotation and Pod times outside these read as unreadable
MAX_NESTING = 32  # levels of the free-form spec fields (securityContext, env valueFrom); real ones use 3

MAX_INSTANCES = 500  # instances one server may be asked for at once (the annotation stays under 64 KiB)
INSTANCE_KEY = re.compile(r"[a-z0-9]{1,16}")  # fits a label value and a Pod name suffix
_MAX_INSTANCES_CHARS = 64 * 1024

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also takes "²", which float() refuses
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class SpecError(ValueError):
    """A spec value the schema let through but nmcp cannot use; `field` names where it is."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def shown(value: Any, limit: int = 40) -> str:
    """`repr(value)` cut to `limit` characters: a hostile value must not flood a condition or a log."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def parse_duration(value: int | float | str, field: str = "duration") -> float:
    """Seconds in `60`, `"60"`, `"60s"`, `"1m30s"` or `"500ms"`, at most MAX_DURATION; SpecError otherwise."""
    seconds: float | None = None
    if isinstance(value, bool):
        raise SpecError(field, f"expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise SpecError(field, f"must not be negative, got {shown(value)}")
        seconds = float(value) if value <= MAX_DURATION else math.inf  # float() of a huge int overflows
    elif isinstance(value, str) and len(value) <= _MAX_DURATION_CHARS:
        seconds = _duration_text(value)
    if seconds is None:
        raise SpecError(field, f"expected a duration such as 60s, 5m or 1h30m, got {shown(value)}")
    if not seconds <= MAX_DURATION:  # also NaN
        raise SpecError(field, f"must be at most {MAX_DURATION_TEXT}, got {shown(value)}")
    return seconds


@functools.lru_cache(maxsize=4096)
def _duration_text(value: str) -> float | None:
    """Seconds in a duration string, None if it is not one. Cached: a pool sync reads the same
    few values (60s, 5m, 2m) for every one of its servers."""
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return float(text)
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if text and pos == len(text) else None


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime; None for missing or unreadable values.

    Years outside 1900-9000 read as unreadable: anyone who may annotate an MCPServer can write
    `9999-12-31T23:59:59Z`, and adding a timeout to it (or converting it to UTC) would overflow.
    """
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if not _YEARS[0] <= parsed.year <= _YEARS[1]:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a Z, to the second, as Kubernetes writes timestamps."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_time_precise(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds, for annotations whose order matters within a second."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Transport:
    type: str = "stdio"
    port: int | None = None
    path: str | None = None

    @property
    def is_http(self) -> bool:
        return self.type != "stdio"


@dataclass(frozen=True)
class InstanceDemand:
    """What the gateway has said about one instance of an isolated server."""

    requested_at: datetime | None = None
    last_active_at: datetime | None = None
    spare: bool = False  # started ahead of any client: no one holds it yet

    def to_json(self) -> dict[str, str | bool]:
        times = {"requestedAt": self.requested_at, "lastActiveAt": self.last_active_at}
        out: dict[str, str | bool] = {name: format_time_precise(value) for name, value in times.items()
                                      if value is not None}
        if self.spare:
            out["spare"] = True
        return out


def read_instances(raw: Any) -> tuple[dict[str, InstanceDemand], str]:
    """The instances annotation as a map, and what is wrong with it ("" when nothing is).

    Bounded and checked, because anyone who may annotate the MCPServer can write it: a value that
    is not a JSON object of at most MAX_INSTANCES entries, each a key of INSTANCE_KEY with readable
    times, is a problem (reported on the server), never an exception in the hooks.
    """
    if raw is None:
        return {}, ""
    if not isinstance(raw, str) or len(raw) > _MAX_INSTANCES_CHARS:
        return {}, f"expected a JSON object of at most {_MAX_INSTANCES_CHARS} characters"
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}, "not JSON"
    if not isinstance(data, dict):
        return {}, f"expected a JSON object of instance keys, got {shown(data)}"
    if len(data) > MAX_INSTANCES:
        return {}, f"{len(data)} instances; at most {MAX_INSTANCES}"
    instances: dict[str, InstanceDemand] = {}
    for key, value in data.items():
        if not INSTANCE_KEY.fullmatch(key) or not isinstance(value, dict):
            return {}, f"instance {shown(key)}: expected a key of 1 to 16 lowercase letters and digits " \
                       "mapped to {requestedAt, lastActiveAt, spare}"
        if not isinstance(value.get("spare", False), bool):
            return {}, f"instance {key}: spare must be true or false, got {shown(value['spare'])}"
        entry = InstanceDemand(parse_time(value.get("requestedAt")), parse_time(value.get("lastActiveAt")),
                               value.get("spare", False))
        if entry.requested_at is None and entry.last_active_at is None:
            return {}, f"instance {key}: neither requestedAt nor lastActiveAt is a readable time"
        instances[key] = entry
    return instances, ""


def write_instances(instances: Mapping[str, InstanceDemand]) -> str:
    """The instances annotation's value (compact, keys sorted: equal maps read back equal)."""
    return json.dumps({key: instances[key].to_json() for key in sorted(instances)}, separators=(",", ":"))


@dataclass(frozen=True)
class Demand:
    """What the gateway has said about a server, read from its annotations."""

    requested_at: datetime | None = None
    last_active_at: datetime | None = None
    stop_requested_at: datetime | None = None
    sessions: int = 0
    instances: Mapping[str, InstanceDemand] = field(default_factory=dict)  # isolated servers
    instances_problem: str = ""  # what is wrong with the instances annotation
    spare: bool = False  # the demand of a spare instance: nobody waits for it or holds it

    @property
    def last_demand(self) -> datetime | None:
        """The latest moment anyone needed the server."""
        times = [t for t in (self.requested_at, self.last_active_at) if t]
        return max(times) if times else None

    @property
    def stopped_by_request(self) -> bool:
        """A stop request newer than any demand holds until demand comes again."""
        last = self.last_demand
        return self.stop_requested_at is not None and (last is None or self.stop_requested_at >= last)

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, Any] | None) -> Demand:
        annotations = annotations or {}
        try:
            sessions = max(0, int(annotations.get(ANN_SESSIONS, 0)))
        except (TypeError, ValueError):
            sessions = 0
        instances, problem = read_instances(annotations.get(ANN_INSTANCES))
        return cls(
            requested_at=parse_time(annotations.get(ANN_REQUESTED_AT)),
            last_active_at=parse_time(annotations.get(ANN_LAST_ACTIVE_AT)),
            stop_requested_at=parse_time(annotations.get(ANN_STOP_REQUESTED_AT)),
            sessions=sessions,
            instances=instances,
            instances_problem=problem,
        )

    def of_instance(self, key: str) -> Demand:
        """The demand of one instance, as the lifecycle reads a server's: its own times, the
        server's stop, and one session (the instance is its client's until released), none for a
        spare (idle, so the pool's maxIdle bounds the spares)."""
        own = self.instances[key]
        return Demand(requested_at=own.requested_at, last_active_at=own.last_active_at,
                      stop_requested_at=self.stop_requested_at, sessions=0 if own.spare else 1, spare=own.spare)


@dataclass(frozen=True)
class Server:
    """An MCPServer with its spec read and checked; `problems` lists what makes it unrunnable."""

    name: str
    namespace: str
    uid: str
    generation: int
    pool: str
    image: str | None
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[dict[str, Any], ...]
    transport: Transport
    idle_timeout: float | None  # None: take the pool's default
    start_timeout: float
    isolation: str
    resources: dict[str, Any] | None
    security_context: dict[str, Any] | None
    demand: Demand
    deleting: bool
    problems: tuple[SpecError, ...] = ()
    # The latest request a start of this server answered. Each hook fills it from what its own
    # controller owns or observes (the Pod's answers-request annotation, the pool's status),
    # never from the other controller's status, which lags.
    answered_at: datetime | None = None
    # The idle timeout in force as the server's hook last wrote it (`status.idleTimeout`: the
    # spec's, else its pool's default), for readers that do not see the pool.
    status_idle_timeout: float | None = None
    # The warm spare instances the gateway keeps of a server with `isolation: session`, as the
    # server's hook wrote them (`status.warmSpares`: its pool's maxIdle).
    status_warm_spares: int = 0
    # Set on the view of one instance of an isolated server (`instance_view`): its key.
    instance: str = ""

    @property
    def key(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}#{self.instance}" if self.instance else base

    @property
    def isolated(self) -> bool:
        """Runs one instance (Pod) per client session or per identity, never a shared one."""
        return self.isolation in ("session", "identity")

    def instance_view(self, key: str) -> Server:
        """The server as one of its instances: what the pool admits and the lifecycle times."""
        return dataclasses.replace(self, instance=key, demand=self.demand.of_instance(key))

    def idle_timeout_in(self, pool: Pool | None) -> float:
        if self.idle_timeout is not None:
            return self.idle_timeout
        return pool.default_idle_timeout if pool else DEFAULT_IDLE_TIMEOUT

    @property
    def effective_idle_timeout(self) -> float:
        """The idle timeout in force, for a reader without the pool (the gateway): the spec's, else
        the pool's default as the hooks recorded it, else the CRD's default."""
        if self.idle_timeout is not None:
            return self.idle_timeout
        return self.status_idle_timeout if self.status_idle_timeout is not None else DEFAULT_IDLE_TIMEOUT


@dataclass(frozen=True)
class Pool:
    name: str
    namespace: str
    uid: str
    generation: int
    max_active: int
    max_idle: int
    default_idle_timeout: float
    default_resources: dict[str, Any] | None
    deleting: bool
    problems: tuple[SpecError, ...] = ()
    # From the pool's own status: what its last sync counted and recorded.
    active: int = 0
    answered: Mapping[str, datetime] = field(default_factory=dict)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests maps and lists more than `limit` levels deep (without recursing)."""
    todo = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, Mapping) else node if isinstance(node, list) else ()
        todo.extend((child, depth + 1) for child in children if isinstance(child, (Mapping, list)))
    return False


def read_resources(raw: Any, field: str) -> tuple[dict[str, dict[str, str]] | None, list[SpecError]]:
    """Container resources with every quantity in the form the API server stores (see
    nmcp.model.quantity), and the problems found; None when there are none to set."""
    if raw is None:
        return None, []
    if not isinstance(raw, Mapping):
        return None, [SpecError(field, f"expected limits and requests, got {raw!r}")]
    result: dict[str, dict[str, str]] = {}
    problems: list[SpecError] = []
    for part in ("limits", "requests"):
        values = raw.get(part)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            problems.append(SpecError(f"{field}.{part}", f"expected a map of quantities, got {values!r}"))
            continue
        for name, value in values.items():
            where = f"{field}.{part}.{name}"
            try:
                quantity = canonical_quantity(value)
            except ValueError as err:
                problems.append(SpecError(where, str(err)))
                continue
            if quantity.startswith("-"):
                problems.append(SpecError(where, f"must not be negative, got {value!r}"))
                continue
            result.setdefault(part, {})[str(name)] = quantity
    return (result or None), problems


def read_answered(raw: Any) -> dict[str, datetime]:
    """A pool's `status.answeredRequests`: server name -> the request its last start answered."""
    if not isinstance(raw, Mapping):
        return {}
    times = {str(name): parse_time(value) for name, value in raw.items()}
    return {name: value for name, value in times.items() if value is not None}


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _generation(meta: Mapping[str, Any]) -> int:
    value = meta.get("generation")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def read_server(obj: Mapping[str, Any], default_namespace: str = "default") -> Server:
    """Read an MCPServer dict. Never raises for a bad spec: problems are collected instead."""
    meta = _metadata(obj)
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    problems: list[SpecError] = []

    def duration(name: str) -> float | None:
        raw = spec.get(name)
        if raw is None:
            return None
        try:
            return parse_duration(raw, f"spec.{name}")
        except SpecError as err:
            problems.append(err)
            return None

    raw_transport = spec.get("transport") if isinstance(spec.get("transport"), Mapping) else {}
    ttype = raw_transport.get("type", "stdio")
    port = raw_transport.get("port")
    if ttype not in TRANSPORTS:
        known = ", ".join(TRANSPORTS)
        problems.append(SpecError("spec.transport.type", f"unknown transport {ttype!r}; use one of {known}"))
        ttype = "stdio"
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        problems.append(SpecError("spec.transport.port", f"expected a port from 1 to 65535, got {shown(port)}"))
        port = None
    elif ttype != "stdio" and port is None:
        problems.append(SpecError("spec.transport.port", f"the {ttype} transport needs a port"))
    path = raw_transport.get("path") or DEFAULT_PATHS.get(ttype)
    transport = Transport(type=ttype, port=port, path=str(path) if path is not None else None)

    def strings(name: str) -> tuple[str, ...]:
        raw = spec.get(name)
        if raw is None:
            return ()
        if isinstance(raw, list):
            return tuple(str(item) for item in raw)
        problems.append(SpecError(f"spec.{name}", f"expected a list of strings, got {raw!r}"))
        return ()

    image = spec.get("image") or None
    if image is not None and not isinstance(image, str):
        problems.append(SpecError("spec.image", f"expected a string, got {image!r}"))
        image = None
    command = strings("command")
    raw_env = spec.get("env")
    env = tuple(dict(e) for e in raw_env if isinstance(e, Mapping)) if isinstance(raw_env, list) else ()
    if raw_env is not None and not isinstance(raw_env, list):
        problems.append(SpecError("spec.env", f"expected a list of environment variables, got {raw_env!r}"))
    if not image and not command:
        problems.append(SpecError("spec", "set an image (Kubernetes) or a command (local runtime)"))

    # The free-form parts (the schema keeps unknown fields there) are copied into the Pod and walked
    # recursively: hundreds of levels of nesting would fail the pool's sync, not just this server.
    security_context = dict(spec["securityContext"]) if isinstance(spec.get("securityContext"), Mapping) else None
    for where, value in [("spec.securityContext", security_context),
                         *((f"spec.env[{i}].valueFrom", e.get("valueFrom")) for i, e in enumerate(env))]:
        if value is not None and _deeper_than(value, MAX_NESTING):
            problems.append(SpecError(where, f"nested deeper than {MAX_NESTING} levels"))
            if where == "spec.securityContext":
                security_context = None
            else:
                env = tuple({k: v for k, v in e.items() if k != "valueFrom"} if e.get("valueFrom") is value else e
                            for e in env)

    isolation = spec.get("isolation") or "shared"
    if isolation not in ISOLATIONS:
        problems.append(SpecError("spec.isolation", f"unknown isolation {shown(isolation)}; use one of "
                                                    f"{', '.join(ISOLATIONS)}"))
        isolation = "shared"
    elif isolation != "shared" and ttype != "stdio":
        problems.append(SpecError("spec.isolation", f"isolation: {isolation} needs the stdio transport "
                                                    "(an HTTP server's instances would share one Service)"))

    start_timeout = duration("startTimeout")
    resources, resource_problems = read_resources(spec.get("resources"), "spec.resources")
    problems.extend(resource_problems)
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), Mapping) else None
    demand = Demand.from_annotations(annotations)
    if demand.instances_problem:
        problems.append(SpecError(f"metadata.annotations[{ANN_INSTANCES}]", demand.instances_problem))
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    return Server(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace") or default_namespace),
        uid=str(meta.get("uid", "")),
        generation=_generation(meta),
        pool=str(spec.get("pool") or "default"),
        image=image,
        command=command,
        args=strings("args"),
        env=env,
        transport=transport,
        idle_timeout=duration("idleTimeout"),
        start_timeout=start_timeout if start_timeout else DEFAULT_START_TIMEOUT,
        isolation=str(isolation),
        resources=resources,
        security_context=security_context,
        demand=demand,
        deleting=bool(meta.get("deletionTimestamp")),
        problems=tuple(problems),
        status_idle_timeout=_duration_or_none(status.get("idleTimeout")),
        status_warm_spares=_count_or_zero(status.get("warmSpares")),
    )


def _count_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT else 0


def _duration_or_none(value: Any) -> float | None:
    """A duration someone else wrote (a status field): None when absent or unreadable."""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return None
    try:
        return parse_duration(value)
    except SpecError:
        return None


def _count(spec: Mapping[str, Any], name: str, default: int, problems: list[SpecError]) -> int:
    """A pool's count field: a whole number from 0 to MAX_COUNT; anything else is a problem and
    reads as the CRD's default (or, above the cap, as the cap)."""
    raw = spec.get(name, default)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        problems.append(SpecError(f"spec.{name}", f"expected a whole number from 0 to {MAX_COUNT}, "
                                                  f"got {shown(raw)}; using {default}"))
        return default
    if raw > MAX_COUNT:
        problems.append(SpecError(f"spec.{name}", f"must be at most {MAX_COUNT}, got {shown(raw)}; using {MAX_COUNT}"))
        return MAX_COUNT
    return raw


def read_pool(obj: Mapping[str, Any], default_namespace: str = "default") -> Pool:
    """Read an MCPPool dict; unusable values fall back to the CRD's defaults and are listed in `problems`."""
    meta = _metadata(obj)
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    problems: list[SpecError] = []
    without = " (servers run without these defaults)"
    try:
        idle = parse_duration(spec.get("defaultIdleTimeout", DEFAULT_IDLE_TIMEOUT), "spec.defaultIdleTimeout")
    except SpecError as err:
        problems.append(SpecError(err.field, f"{err.message}; using {DEFAULT_IDLE_TIMEOUT:g}s"))
        idle = DEFAULT_IDLE_TIMEOUT
    max_active = _count(spec, "maxActive", 10, problems)
    max_idle = _count(spec, "maxIdle", 2, problems)
    resources, resource_problems = read_resources(spec.get("defaultResources"), "spec.defaultResources")
    problems.extend(SpecError(p.field, p.message + without) for p in resource_problems)
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    active = status.get("active")
    return Pool(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace") or default_namespace),
        uid=str(meta.get("uid", "")),
        generation=_generation(meta),
        max_active=max_active,
        max_idle=max_idle,
        default_idle_timeout=idle,
        default_resources=resources,
        deleting=bool(meta.get("deletionTimestamp")),
        problems=tuple(problems),
        active=active if isinstance(active, int) and not isinstance(active, bool) and active >= 0 else 0,
        answered=read_answered(status.get("answeredRequests")),
    )
