"""The OpenAPI schema's error answers, which drf-spectacular leaves out: every operation may
answer 401 (no or bad credentials) and 403 (role too low); one with parameters or a body 400
(``detail``, or one list of messages per field); one on a path with an id 404."""

from __future__ import annotations

ERROR = {
    "type": "object",
    "description": "`detail` says why; a refused form names each field with its messages.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}
ANSWERS = {
    "400": "Invalid parameters or data, or refused by keygov's rules (see `detail`).",
    "401": "No credentials, or an invalid, expired or revoked token.",
    "403": "Your role does not allow this.",
    "404": "No such object.",
}


def add_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            codes = ["401", "403"]
            if operation.get("parameters") or operation.get("requestBody"):
                codes.append("400")
            if "{" in path:
                codes.append("404")
            for code in codes:
                operation["responses"].setdefault(
                    code, {"description": ANSWERS[code], "content": ref}
                )
    return result
