"""Checking a real answer against the served OpenAPI document: its status is documented, its body fits."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema


def documented_operation(doc: dict[str, Any], method: str, template: str) -> dict[str, Any]:
    """The operation object of `method template` (e.g. "post", "/flexoffer/{offer_id}")."""
    return doc["paths"][template][method.lower()]


def assert_documented(doc: dict[str, Any], method: str, template: str, response: httpx.Response) -> None:
    """The answer's status is documented for the operation, with its media type and, for JSON,
    a body that the documented schema accepts (jsonschema, draft 2020-12, components resolved)."""
    operation = documented_operation(doc, method, template)
    status = str(response.status_code)
    assert status in operation["responses"], f"{method.upper()} {template}: {status} is not documented"
    answer = operation["responses"][status]
    content = answer.get("content")
    if not content:
        return
    media = response.headers.get("content-type", "").split(";")[0].strip()
    assert media in content, f"{method.upper()} {template} {status}: {media} is not documented ({list(content)})"
    if media != "application/json":
        return
    schema = {**content[media]["schema"], "components": doc["components"]}
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(response.json())
    for name in answer.get("headers", {}):
        if name.lower() == "www-authenticate":
            assert response.headers.get(name) == "Bearer"
