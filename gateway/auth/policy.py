"""Access policy: MCPAccessPolicy objects (crds/mcpaccesspolicies.yaml) and the decisions made
from them.

A policy names subjects (user, group, ServiceAccount, claim match), the servers of its namespace
they may use, the tools of those servers they may see and call (shell-style patterns), and the REST
operations they may perform (`request`, `shutdown`, `logs`; listing and inspecting come with use).
Policies only ever allow: a caller may do what any policy that matches them allows, and nothing
else. One rule answers both "is this tool listed" and "may this tool be called", so a caller never
sees a tool they cannot call nor calls one they were not shown.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.auth.identity import Identity
from nmcp.model import manifests

log = logging.getLogger(__name__)
KIND = "MCPAccessPolicy"
OPERATIONS = ("request", "shutdown", "logs")


@dataclass(frozen=True)
class Rule:
    """One MCPAccessPolicy."""

    namespace: str
    name: str
    subjects: tuple[Mapping[str, Any], ...]
    servers: tuple[str, ...]
    tools: tuple[str, ...]
    operations: frozenset[str]

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Rule:
        spec = obj["spec"]
        return cls(namespace=obj["metadata"].get("namespace", "default"), name=obj["metadata"]["name"],
                   subjects=tuple(spec["subjects"]), servers=tuple(spec["servers"]),
                   tools=tuple(spec.get("tools", ["*"])), operations=frozenset(spec.get("operations", [])))

    def matches(self, who: Identity) -> bool:
        return any(_subject_matches(subject, who) for subject in self.subjects)

    def covers(self, namespace: str, server: str) -> bool:
        return namespace == self.namespace and ("*" in self.servers or server in self.servers)

    def allows_tool(self, tool: str) -> bool:
        return any(fnmatch.fnmatchcase(tool, pattern) for pattern in self.tools)


def _subject_matches(subject: Mapping[str, Any], who: Identity) -> bool:
    if "user" in subject:
        return who.subject == subject["user"]
    if "group" in subject:
        return subject["group"] in who.groups
    if "serviceAccount" in subject:
        namespace, _, name = subject["serviceAccount"].partition("/")
        return who.subject == f"system:serviceaccount:{namespace}:{name}"
    if "claim" in subject:
        value = who.claims.get(subject["claim"]["name"])
        wanted = subject["claim"]["value"]
        return value == wanted or (isinstance(value, list) and wanted in value)
    return False


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()

    def _rules(self, who: Identity, namespace: str, server: str) -> list[Rule]:
        return [r for r in self.rules if r.covers(namespace, server) and r.matches(who)]

    def may_use(self, who: Identity, namespace: str, server: str) -> bool:
        return bool(self._rules(who, namespace, server))

    def may(self, who: Identity, namespace: str, server: str, operation: str) -> bool:
        return any(operation in r.operations for r in self._rules(who, namespace, server))

    def tool_rule(self, who: Identity, namespace: str, server: str) -> Callable[[str], bool]:
        """Whether `who` may see and call a tool of this server, by name."""
        rules = self._rules(who, namespace, server)
        return lambda tool: any(r.allows_tool(tool) for r in rules)


def policy_of(objects: Iterable[Mapping[str, Any]]) -> Policy:
    return Policy(tuple(Rule.from_object(obj) for obj in objects))


class ManifestPolicies:
    """The MCPAccessPolicy documents of the manifests `nmcp up` serves (NMCP_MANIFESTS), read again
    when the files change (checked at most every `interval` seconds, like the servers' live reload)."""

    def __init__(self, paths: Sequence[str], namespace: str, interval: float) -> None:
        self.paths = paths
        self.namespace = namespace
        self.interval = interval
        self._fingerprint: Any = None
        self._checked = float("-inf")
        self._policy = Policy()

    def current(self) -> Policy:
        now = time.monotonic()
        loaded = self._fingerprint is not None
        if loaded and (not self.interval or now - self._checked < self.interval):  # 0: live reload off
            return self._policy
        self._checked = now
        fingerprint = manifests.fingerprint(self.paths)
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            result = manifests.load(self.paths, self.namespace)
            for problem in result.problems:
                if KIND in problem.subject:
                    log.warning("access policy not loaded: %s", problem)
            self._policy = policy_of(m.obj for m in result.of_kind(KIND))
            log.info("access policy: %d MCPAccessPolicy objects", len(self._policy.rules))
        return self._policy


class ClusterPolicies:
    """The MCPAccessPolicy objects of the served namespaces, listed from the cluster at most every
    `interval` seconds (a failed list keeps the last one and is logged)."""

    def __init__(self, lister: Callable[[str | None], list[Mapping[str, Any]]], namespaces: Sequence[str],
                 interval: float) -> None:
        self.lister = lister
        self.namespaces: tuple[str | None, ...] = (None,) if "*" in namespaces else tuple(namespaces)
        self.interval = interval
        self._checked = float("-inf")
        self._policy = Policy()

    def current(self) -> Policy:
        now = time.monotonic()
        if now - self._checked < self.interval:
            return self._policy
        self._checked = now
        try:
            objects = [obj for namespace in self.namespaces for obj in self.lister(namespace)]
        except Exception as err:  # the API server is away: the last policy stays in force
            log.error("access policy: cannot list MCPAccessPolicy objects: %s", err)
            return self._policy
        self._policy = policy_of(objects)
        return self._policy
