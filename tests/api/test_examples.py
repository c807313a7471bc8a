"""Every example shown in /docs is valid for its model (clients copy them)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from taflow.api import schemas, webhook_schemas
from taflow.api.problems import Problem
from taflow.domain.models import RequestDraft

MODELS: list[type[BaseModel]] = [
    Problem,
    *[
        m
        for module in (schemas, webhook_schemas)
        for m in vars(module).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == module.__name__
    ],
]


@pytest.mark.parametrize(
    "model", [m for m in MODELS if isinstance(m.model_config.get("json_schema_extra"), dict)]
)
def test_examples_validate(model: type[BaseModel]) -> None:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict)
    examples = extra["examples"]
    assert isinstance(examples, list) and examples
    for example in examples:
        model.model_validate(example)


def test_draft_example_validates() -> None:
    RequestDraft.model_validate(schemas.DRAFT_EXAMPLE)
