"""RFC 9728 Protected Resource Metadata: one document per server path, and one for the gateway."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from gateway.auth import authenticator
from gateway.auth.resource import WELL_KNOWN, is_resource_path, metadata
from gateway.web import error_response

bp = Blueprint("auth", __name__)


@bp.get(WELL_KNOWN)
@bp.get(WELL_KNOWN + "/<path:rest>")
def protected_resource(rest: str = "") -> Response:
    auth = authenticator()
    path = "/" + rest if rest else ""
    if not auth.enabled or not is_resource_path(path):
        return error_response(404, "not_found", "no protected resource here")
    issuers = [auth.config.auth_issuer]
    return jsonify(metadata(auth.resource(path), issuers, auth.config.auth_scopes))
