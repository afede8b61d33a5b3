"""Who is calling: bearer tokens on every MCP and REST endpoint (the MCP authorization
specification: the gateway is an OAuth 2.1 resource server).

`Authenticator.from_config` decides the mode once, at start: tokens are required once an issuer
(NMCP_AUTH_ISSUER) or TokenReview (NMCP_AUTH_TOKENREVIEW_AUDIENCES) is configured; with neither,
the gateway runs open only on loopback or when NMCP_AUTH=none says so, and refuses to start
otherwise. `authenticate_request` runs before every view (gateway.web.guard_request): the probes,
/metrics, /openapi.json and the RFC 9728 documents stay open; any other request without an
acceptable token gets 401, one lacking a required scope 403, each with its `WWW-Authenticate`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Response, current_app, g, jsonify, request

from gateway import hosts
from gateway.auth.access import authorize
from gateway.auth.identity import ANONYMOUS, Identity
from gateway.auth.policy import ClusterPolicies, ManifestPolicies, Policy
from gateway.auth.resource import WELL_KNOWN, Resource, challenge, resource_for
from gateway.auth.tokenreview import TokenReviewVerifier
from gateway.auth.tokens import IssuerUnavailable, JwtVerifier, Rejected
from gateway.config import Config, ConfigError
from gateway.kube.client import MCPACCESSPOLICIES, KubeClient
from gateway.kube.config import ClusterConfigError, load_cluster

__all__ = ["ANONYMOUS", "Authenticator", "Identity", "authenticate_request", "identity"]

log = logging.getLogger(__name__)
POLICY_LIST_INTERVAL = 5.0  # seconds a listed access policy stays in force (kubernetes)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


class PolicySource(Protocol):
    def current(self) -> Policy: ...


NO_POLICY = ManifestPolicies((), "default", 0)  # allows nothing


@dataclass
class Authenticator:
    config: Config
    jwt: JwtVerifier | None = None
    tokenreview: TokenReviewVerifier | None = None
    policies: PolicySource = NO_POLICY

    @property
    def enabled(self) -> bool:
        return self.jwt is not None or self.tokenreview is not None

    @classmethod
    def from_config(cls, config: Config) -> Authenticator:
        verifier = reviewer = None
        if config.auth_issuer:
            try:
                verifier = JwtVerifier(config.auth_issuer, config.auth_algorithms)
            except ValueError as err:
                raise ConfigError(str(err)) from err
            log.info("authentication: bearer tokens from issuer %s", config.auth_issuer)
        if config.auth_tokenreview_audiences:
            reviewer = TokenReviewVerifier(kube_client(config), config.auth_tokenreview_audiences)
            log.info("authentication: ServiceAccount tokens for %s, through TokenReview",
                     ", ".join(config.auth_tokenreview_audiences))
        if verifier is not None or reviewer is not None:
            return cls(config, verifier, reviewer, policies_for(config, reviewer))
        if config.auth != "none" and not hosts.is_loopback(config.bind):
            raise ConfigError(f"the gateway listens on {config.bind}, beyond loopback, without authentication: "
                              "set NMCP_AUTH_ISSUER, or NMCP_AUTH=none to run it open on purpose")
        log.warning("authentication is off: anyone who reaches %s may use every server (%s)", config.bind,
                    "NMCP_AUTH=none" if config.auth == "none" else "loopback only")
        return cls(config)

    def base_url(self) -> str:
        return self.config.auth_resource_url or request.host_url

    def resource(self, path: str) -> Resource:
        return resource_for(self.base_url(), path)

    def verify(self, authorization: str | None, resource: Resource) -> Identity:
        """The caller a request's Authorization header proves (Rejected when it proves none)."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Rejected("")  # no credentials: a bare challenge (RFC 6750 §3.1)
        if self.tokenreview is not None and (self.jwt is None or not self.jwt.issued_here(token)):
            return self.tokenreview.verify(token)
        assert self.jwt is not None
        return self.jwt.verify(token, (resource.url, *self.config.auth_audiences))


def kube_client(config: Config) -> KubeClient:
    """A client of the cluster the gateway runs in (or the one its kubeconfig names)."""
    try:
        return KubeClient(load_cluster(os.environ, config.kubeconfig or None, config.kube_context or None))
    except ClusterConfigError as err:
        raise ConfigError(f"NMCP_AUTH_TOKENREVIEW_AUDIENCES: no Kubernetes API to review tokens with: {err}") from err


def policies_for(config: Config, reviewer: TokenReviewVerifier | None) -> PolicySource:
    """Where the MCPAccessPolicy objects come from: the manifests (local runtime) or the cluster."""
    if config.runtime == "local":
        return ManifestPolicies(config.manifests, config.up_namespace, config.up_poll_interval)
    reviewing = reviewer.client if reviewer is not None else None
    client = reviewing if isinstance(reviewing, KubeClient) else kube_client(config)
    namespaces = config.namespaces or (client.cluster.namespace,)

    def lister(namespace: str | None) -> list[dict[str, Any]]:
        return client.list(MCPACCESSPOLICIES, namespace).get("items", [])

    return ClusterPolicies(lister, namespaces, POLICY_LIST_INTERVAL)


def _challenge_response(status: int, code: str, message: str, www_authenticate: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers["WWW-Authenticate"] = www_authenticate
    return response


def authenticator() -> Authenticator:
    return current_app.extensions["nmcp.auth"]


def identity() -> Identity:
    """The caller of the current request (ANONYMOUS when authentication is off or the path is open)."""
    return g.get("nmcp_identity", ANONYMOUS)


def authenticate_request() -> Response | None:
    auth = authenticator()
    path = request.path
    if not auth.enabled or path in OPEN_PATHS or path.startswith(WELL_KNOWN):
        return None
    resource = auth.resource(path)
    try:
        caller = auth.verify(request.headers.get("Authorization"), resource)
    except Rejected as err:
        description = str(err)
        return _challenge_response(
            401, "unauthorized", f"a valid bearer token for {resource.url} is required"
            + (f": {description}" if description else ""),
            challenge(resource, "invalid_token" if description else "", description))
    except IssuerUnavailable as err:
        log.error("token not verified: %s", err)
        return _challenge_response(503, "issuer_unavailable", "the token issuer cannot be reached; try again later",
                                   challenge(resource))
    missing = [scope for scope in auth.config.auth_scopes if scope not in caller.scopes]
    if missing:
        needed = " ".join(auth.config.auth_scopes)
        return _challenge_response(403, "insufficient_scope", f"the token lacks scope {' '.join(missing)}",
                                   challenge(resource, "insufficient_scope", "", needed))
    g.nmcp_identity = caller
    return authorize(auth.policies.current(), caller)
