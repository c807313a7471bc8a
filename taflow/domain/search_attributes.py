"""Typed search attributes, so ops can filter requests in the Temporal UI."""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey

TA_STAGE = SearchAttributeKey.for_keyword("TaStage")
TA_MEMBER_STATE = SearchAttributeKey.for_keyword("TaMemberState")
TA_TOPICS = SearchAttributeKey.for_keyword_list("TaTopics")
TA_SLA_DUE_AT = SearchAttributeKey.for_datetime("TaSlaDueAt")
TA_DUPLICATE = SearchAttributeKey.for_keyword("TaDuplicate")
TA_ESCALATED = SearchAttributeKey.for_bool("TaEscalated")

ALL_SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[Any], ...] = (
    TA_STAGE,
    TA_MEMBER_STATE,
    TA_TOPICS,
    TA_SLA_DUE_AT,
    TA_DUPLICATE,
    TA_ESCALATED,
)


def dev_server_flags() -> list[str]:
    """`--search-attribute NAME=Type` flags for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList", "DATETIME": "Datetime", "BOOL": "Bool"}
    flags: list[str] = []
    for key in ALL_SEARCH_ATTRIBUTES:
        flags += [
            "--search-attribute",
            f"{key.name}={kinds[key.indexed_value_type.name.removeprefix('INDEXED_VALUE_TYPE_')]}",
        ]
    return flags
