"""The OpenAPI document is complete: every operation has a summary, says who may call it, declares its
errors as problem+json, and shows examples of what goes in and what comes out."""

from __future__ import annotations

from typing import Any

import pytest

from taflow.api.app import create_app

SPEC: dict[str, Any] = create_app().openapi()
OPERATIONS = [
    pytest.param(path, method, op, id=f"{method.upper()} {path}")
    for path, item in SPEC["paths"].items()
    for method, op in item.items()
]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        resolved: dict[str, Any] = SPEC["components"]["schemas"][ref.split("/")[-1]]
        return resolved
    return schema


def _has_example(media: dict[str, Any]) -> bool:
    if media.get("example") is not None or media.get("examples"):
        return True
    schema = _resolve(media.get("schema", {}))
    return bool(schema.get("examples") or schema.get("example"))


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS)
def test_operation_is_documented(path: str, method: str, op: dict[str, Any]) -> None:
    assert op.get("summary"), "no summary"
    responses = op["responses"]
    success = [c for c in responses if c.startswith("2")]
    assert success, "no success response"
    for code in success:
        content = responses[code].get("content", {})
        if code != "204" and path != "/openapi.json":
            assert content, f"{code} has no content"
            assert all(_has_example(m) for m in content.values()), f"{code} has no example"
    if path.startswith("/v1/"):
        assert "**Who:**" in op.get("description", ""), "does not say who may call it"
        errors = {c: r for c, r in responses.items() if c[0] in "45"}
        assert "401" in errors and "422" in errors, sorted(errors)
        for code, response in errors.items():
            assert list(response["content"]) == ["application/problem+json"], code
        if method in ("post", "delete"):
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
            assert "Idempotency-Key" in names, "state-changing call without Idempotency-Key"
    if "requestBody" in op:
        media = op["requestBody"]["content"]["application/json"]
        assert _has_example(media), "request body without an example"
        assert "413" in responses and "415" in responses
