"""Matching an approved TA request to experts and programmes: pure ranking with reasons, no I/O."""

from taflow.matching.rank import (
    CATEGORY_FOR_MODALITY,
    LOCAL_LANGUAGES,
    ExpertProfile,
    ProgrammeCandidate,
    ProgrammeProfile,
    exclusion_reason,
    parse_unavailable,
    propose_programmes,
    rank_experts,
    working_languages,
)

__all__ = [
    "CATEGORY_FOR_MODALITY",
    "LOCAL_LANGUAGES",
    "ExpertProfile",
    "ProgrammeCandidate",
    "ProgrammeProfile",
    "exclusion_reason",
    "parse_unavailable",
    "propose_programmes",
    "rank_experts",
    "working_languages",
]
