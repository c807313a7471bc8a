"""Duplicate detection for TA requests: pure scoring (``engine``), text analysis (``text``), and the
replay/scoring harness for the labelled reference set (``evaluate``)."""

from taflow.dedup.engine import (
    CatalogueItem,
    CorpusStats,
    Decision,
    Evidence,
    Need,
    PriorOutcome,
    RankedCandidate,
    Relation,
    Settings,
    Verdict,
    activity_duplicate_rule,
    consolidation_rule,
    decide,
    request_duplicate_rule,
    score_pair,
)

__all__ = [
    "CatalogueItem",
    "CorpusStats",
    "Decision",
    "Evidence",
    "Need",
    "PriorOutcome",
    "RankedCandidate",
    "Relation",
    "Settings",
    "Verdict",
    "activity_duplicate_rule",
    "consolidation_rule",
    "decide",
    "request_duplicate_rule",
    "score_pair",
]
