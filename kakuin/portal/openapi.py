"""The OpenAPI 3.1 document of ``/api/v1`` (written by hand to match
``kakuin.portal.api``; tests run schemathesis against it and check that every
route is described)."""

from __future__ import annotations

from typing import Any

from kakuin.portal.settings import PortalConfig
from kakuin.ra.revocation import ALLOWED_REASONS
from kakuin.ra.tsv.formats import TSVKind


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problems(*codes: int) -> dict[str, Any]:
    words = {
        400: "bad request",
        403: "client certificate refused, or not allowed for this actor",
        404: "not found (or not of your institution)",
        409: "refused (e.g. already revoked)",
        422: "refused by a rule",
    }
    out = {
        str(c): {"description": words[c], "content": {"application/problem+json": {"schema": _ref("Problem")}}}
        for c in codes
    }
    out.setdefault(
        "403", {"description": words[403], "content": {"application/problem+json": {"schema": _ref("Problem")}}}
    )
    return out


_STR_OR_NULL = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 7807 problem document",
        "required": ["type", "detail", "status"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "detail": {"type": "string"},
            "status": {"type": "integer"},
            "rule": _STR_OR_NULL,
            "field": _STR_OR_NULL,
            "reason": {"type": "string"},
            "errors": {"type": "array", "items": _ref("RowError")},
        },
    },
    "Me": {
        "type": "object",
        "required": ["name", "actor", "role", "institution"],
        "properties": {
            "name": {"type": "string"},
            "actor": {"type": "string"},
            "role": {"enum": ["operator", "officer"]},
            "institution": _STR_OR_NULL,
        },
    },
    "Institution": {
        "type": "object",
        "required": ["id", "name_en", "domains", "confirmed"],
        "properties": {
            "id": {"type": "integer"},
            "name_en": {"type": "string"},
            "name_ja": _STR_OR_NULL,
            "prefecture": _STR_OR_NULL,
            "city": _STR_OR_NULL,
            "confirmed_until": _TIME_OR_NULL,
            "confirmed": {"type": "boolean"},
            "domains": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["domain", "approved"],
                    "properties": {"domain": {"type": "string"}, "approved": {"type": "boolean"}},
                },
            },
            "officers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
                },
            },
        },
    },
    "CertificateSummary": {
        "type": "object",
        "required": ["serial", "profile", "status", "subject", "names", "not_before", "not_after"],
        "properties": {
            "serial": {"type": "string", "pattern": "^[0-9a-f]+$"},
            "profile": {"type": "string"},
            "status": {"enum": ["valid", "revoked", "expired", "not-yet-valid"]},
            "subject": {"type": "string"},
            "names": {"type": "array", "items": {"type": "string"}},
            "institution": _STR_OR_NULL,
            "not_before": _TIME,
            "not_after": _TIME,
        },
    },
    "Certificate": {
        "allOf": [
            _ref("CertificateSummary"),
            {
                "type": "object",
                "properties": {
                    "issuer": {"type": "string"},
                    "issuer_slug": {"type": "string"},
                    "key_type": {"type": "string"},
                    "spki_sha256": {"type": "string"},
                    "issued_at": _TIME_OR_NULL,
                    "revoked_at": _TIME_OR_NULL,
                    "revocation_reason": {"type": ["integer", "null"]},
                    "revocation_comment": _STR_OR_NULL,
                    "subscriber": _STR_OR_NULL,
                    "officer": _STR_OR_NULL,
                    "downloaded": {"type": ["boolean", "null"]},
                    "replaces": _STR_OR_NULL,
                    "replaced_by": _STR_OR_NULL,
                    "pem": _STR_OR_NULL,
                },
            },
        ]
    },
    "RevokeRequest": {
        "type": "object",
        "required": ["reason"],
        "properties": {
            "reason": {
                "description": "RFC 5280 reason code or name; BR 7.2.2 allows: "
                + ", ".join(f"{k} {v}" for k, v in ALLOWED_REASONS.items()),
                "oneOf": [{"type": "integer"}, {"type": "string"}],
            },
            "comment": {"type": "string", "description": "required for reason 0 (unspecified)"},
        },
    },
    "Revoked": {
        "type": "object",
        "required": ["serial", "reason", "revoked_at", "blocked_key"],
        "properties": {
            "serial": {"type": "string"},
            "reason": {"type": "integer"},
            "reason_name": {"type": "string"},
            "revoked_at": _TIME,
            "blocked_key": {"type": "boolean"},
            "same_key": {"type": "array", "items": {"type": "string"}},
        },
    },
    "RowError": {
        "type": "object",
        "required": ["row", "rule", "message_ja", "message_en"],
        "properties": {
            "row": {"type": "integer", "description": "1-based line; 0 for the whole file"},
            "column": {"type": ["integer", "null"]},
            "rule": {"type": "string"},
            "message_ja": {"type": "string"},
            "message_en": {"type": "string"},
        },
    },
    "CheckReport": {
        "type": "object",
        "required": ["ok", "kind", "encoding", "rows", "errors"],
        "properties": {
            "ok": {"type": "boolean"},
            "kind": {"enum": [k.value for k in TSVKind]},
            "encoding": {"type": "string"},
            "rows": {"type": "integer"},
            "errors": {"type": "array", "items": _ref("RowError")},
        },
    },
    "ApplyReport": {
        "type": "object",
        "required": ["application_id", "kind", "status", "results"],
        "properties": {
            "application_id": {"type": "integer"},
            "kind": {"enum": [k.value for k in TSVKind]},
            "status": {"enum": ["applied", "partial"]},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["row", "ok"],
                    "properties": {
                        "row": {"type": "integer"},
                        "ok": {"type": "boolean"},
                        "serial": _STR_OR_NULL,
                        "kid": _STR_OR_NULL,
                        # Download method 3 (in the browser): the enrollment waiting for the
                        # subscriber's CSR; nothing is issued yet, so no serial.
                        "enrollment": {"type": ["integer", "null"]},
                        "errors": {"type": "array", "items": _ref("RowError")},
                    },
                },
            },
        },
    },
    "EABCredential": {
        "type": "object",
        "required": ["kid", "institution", "domains", "created_at", "state"],
        "properties": {
            "kid": {"type": "string"},
            "institution": {"type": "string"},
            "domains": {"type": "array", "items": {"type": "string"}},
            "created_at": _TIME,
            "expires_at": _TIME_OR_NULL,
            "revoked_at": _TIME_OR_NULL,
            "state": {"enum": ["unused", "bound", "revoked"]},
        },
    },
    "NewEABRequest": {
        "type": "object",
        "properties": {
            "institution": {"type": "string", "description": "operator only; officers get their own"},
            "domains": {"type": "array", "items": {"type": "string"}},
            "days": {"type": "integer", "minimum": 1, "maximum": 3650},
        },
    },
    "NewEAB": {
        "type": "object",
        "description": "The HMAC key appears here once and never again.",
        "required": ["kid", "hmac_key", "institution", "domains"],
        "properties": {
            "kid": {"type": "string"},
            "hmac_key": {"type": "string", "description": "base64url, no padding"},
            "institution": {"type": "string"},
            "domains": {"type": "array", "items": {"type": "string"}},
            "expires_at": _TIME_OR_NULL,
        },
    },
    "Stats": {
        "type": "object",
        "required": ["institution", "issued", "revoked", "valid", "downloaded", "not_downloaded", "expiring_30d"],
        "properties": {
            "institution": {"type": "string"},
            **{
                k: {"type": "integer"}
                for k in ("issued", "revoked", "valid", "downloaded", "not_downloaded", "expiring_30d")
            },
            "domains": {"type": "array", "items": {"type": "object"}},
            "expiring_by_week": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"week_start": {"type": "string", "format": "date"}, "count": {"type": "integer"}},
                },
            },
        },
    },
    "PendingRevocation": {
        "type": "object",
        "required": ["id", "serial", "reason", "deadline", "seconds_left", "overdue"],
        "properties": {
            "id": {"type": "integer"},
            "serial": {"type": "string"},
            "subject": {"type": "string"},
            "institution": _STR_OR_NULL,
            "reason": {"type": "integer"},
            "reason_name": {"type": "string"},
            "reported_at": _TIME,
            "reported_by": {"type": "string"},
            "deadline": _TIME,
            "seconds_left": {"type": "integer", "description": "negative when overdue"},
            "overdue": {"type": "boolean"},
            "comment": _STR_OR_NULL,
        },
    },
}


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _p(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


_TSV_BODY = {
    "required": True,
    "description": "The TSV file as it is (Shift_JIS or UTF-8, CRLF or LF).",
    "content": {"text/tab-separated-values": {"schema": {"type": "string", "format": "binary"}}},
}
_TSV_PARAMS = [
    _q("institution", {"type": "string"}, "registered English name; officers default to their own"),
    _q("kind", {"enum": [k.value for k in TSVKind]}, "the kind of file; guessed from the column count when absent"),
]


def document(config: PortalConfig | None = None) -> dict[str, Any]:
    servers = []
    if config is not None:
        port = config.listen.rpartition(":")[2]
        servers = [{"url": f"https://{config.server_name}:{port}"}]
    arr = lambda name: {"type": "array", "items": _ref(name)}  # noqa: E731
    paths: dict[str, Any] = {
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {"description": "OpenAPI document", "content": {"application/json": {}}},
                    **_problems(),
                },
            }
        },
        "/api/v1/me": {
            "get": {
                "operationId": "me",
                "summary": "Who is signed in",
                "responses": {"200": _json(_ref("Me"), "identity"), **_problems()},
            }
        },
        "/api/v1/institutions": {
            "get": {
                "operationId": "listInstitutions",
                "summary": "Institutions the actor may see (an officer: their own)",
                "responses": {"200": _json(arr("Institution"), "institutions"), **_problems()},
            }
        },
        "/api/v1/institutions/{name}": {
            "get": {
                "operationId": "getInstitution",
                "parameters": [_p("name", "registered English name")],
                "responses": {"200": _json(_ref("Institution"), "institution"), **_problems(404)},
            }
        },
        "/api/v1/certificates": {
            "get": {
                "operationId": "searchCertificates",
                "summary": "Search issued certificates, newest first",
                "parameters": [
                    _q("q", {"type": "string"}, "serial prefix, or part of the subject or a name"),
                    _q("status", {"enum": ["valid", "revoked", "expired"]}, "filter by status"),
                    _q("institution", {"type": "string"}, "operator: one institution"),
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "at most this many"),
                ],
                "responses": {"200": _json(arr("CertificateSummary"), "certificates"), **_problems(400, 404)},
            }
        },
        "/api/v1/certificates/{serial}": {
            "get": {
                "operationId": "getCertificate",
                "parameters": [_p("serial", "hexadecimal serial")],
                "responses": {"200": _json(_ref("Certificate"), "certificate"), **_problems(404)},
            }
        },
        "/api/v1/certificates/{serial}/revoke": {
            "post": {
                "operationId": "revokeCertificate",
                "parameters": [_p("serial", "hexadecimal serial")],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RevokeRequest")}}},
                "responses": {"200": _json(_ref("Revoked"), "revoked"), **_problems(400, 404, 409, 422)},
            }
        },
        "/api/v1/tsv/check": {
            "post": {
                "operationId": "checkTSV",
                "summary": "Check every row; nothing is stored",
                "parameters": _TSV_PARAMS,
                "requestBody": _TSV_BODY,
                "responses": {"200": _json(_ref("CheckReport"), "report"), **_problems(400, 404, 409, 422)},
            }
        },
        "/api/v1/tsv/apply": {
            "post": {
                "operationId": "applyTSV",
                "summary": "Apply the file: every row, or none unless row_by_row",
                "parameters": [
                    *_TSV_PARAMS,
                    _q("row_by_row", {"enum": ["0", "1", "true", "false"]}, "apply good rows only"),
                ],
                "requestBody": _TSV_BODY,
                "responses": {"200": _json(_ref("ApplyReport"), "applied"), **_problems(400, 404, 409, 422)},
            }
        },
        "/api/v1/eab": {
            "get": {
                "operationId": "listEAB",
                "responses": {"200": _json(arr("EABCredential"), "credentials"), **_problems()},
            },
            "post": {
                "operationId": "createEAB",
                "summary": "A new EAB credential; the HMAC key is in this response only",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("NewEABRequest")}}},
                "responses": {"201": _json(_ref("NewEAB"), "created"), **_problems(400, 404, 409, 422)},
            },
        },
        "/api/v1/eab/{kid}": {
            "delete": {
                "operationId": "revokeEAB",
                "parameters": [_p("kid", "key identifier")],
                "responses": {"204": {"description": "revoked"}, **_problems(404, 409)},
            }
        },
        "/api/v1/stats": {
            "get": {
                "operationId": "stats",
                "parameters": [
                    _q("institution", {"type": "string"}, "one institution"),
                    _q("weeks", {"type": "integer", "minimum": 1, "maximum": 104, "default": 12}, "weeks of expiries"),
                ],
                "responses": {"200": _json(arr("Stats"), "statistics"), **_problems(400, 404)},
            }
        },
        "/api/v1/revocation-requests": {
            "get": {
                "operationId": "pendingRevocations",
                "summary": "Open revocation requests with their BR 4.9.1.1 deadlines, soonest first",
                "responses": {"200": _json(arr("PendingRevocation"), "pending"), **_problems()},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kakuin RA API",
            "version": "1",
            "description": "Registration authority API for officers and the CA operator. Authentication: the "
            "client certificate of the TLS connection (mutual TLS). Request bodies are JSON or TSV only "
            "(CSRF). Errors are RFC 7807 problem documents.",
        },
        "servers": servers,
        "security": [{"clientCertificate": []}],
        "components": {
            "securitySchemes": {
                "clientCertificate": {"type": "mutualTLS", "description": "officer client certificate"}
            },
            "schemas": SCHEMAS,
        },
        "paths": paths,
    }
