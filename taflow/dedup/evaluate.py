"""Replay and scoring of the labelled duplicate-detection set (``shared/reference/dedup/README.md``).

``replay`` handles the requests in submission order; for request ``r`` it uses only the catalogue and
the requests submitted before ``r`` (their fields and text, never their labels) and our own earlier
outputs (a request we judged a duplicate is folded into its target). ``score`` follows the README's
code exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from taflow.dedup.engine import (
    CatalogueItem,
    CorpusStats,
    Decision,
    Need,
    PriorOutcome,
    Settings,
    decide,
)
from taflow.dedup.text import Glossary, default_glossary


class Label(BaseModel):
    model_config = ConfigDict(frozen=True)

    duplicate_of: str | None = None
    consolidate_with: list[str] = []
    note: str = ""


class LabelledNeed(Need):
    label: Label | None = None


class Prediction(BaseModel):
    model_config = ConfigDict(frozen=True)

    duplicate_of: str | None = None
    consolidate_with: list[str] = []


class PRF(BaseModel):
    model_config = ConfigDict(frozen=True)

    precision: float
    recall: float
    f1: float
    gold: int
    predicted: int
    correct: int

    def summary(self) -> str:
        return (
            f"P={self.precision:.3f} R={self.recall:.3f} F1={self.f1:.3f} "
            f"(correct {self.correct}, predicted {self.predicted}, gold {self.gold})"
        )


class Report(BaseModel):
    model_config = ConfigDict(frozen=True)

    duplicates: PRF
    consolidation: PRF
    hard_negatives: int
    hard_negatives_flagged: int
    flagged_hard_negative_ids: list[str] = []

    def summary(self) -> str:
        return (
            f"duplicates {self.duplicates.summary()}; consolidation {self.consolidation.summary()}; "
            f"hard negatives flagged {self.hard_negatives_flagged}/{self.hard_negatives}"
        )


def _read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def load_requests(path: str | Path) -> list[LabelledNeed]:
    """Requests from a JSONL file, with their labels when present, sorted by submission time."""
    reqs = [LabelledNeed.model_validate(row) for row in _read_jsonl(path)]
    return sorted(reqs, key=lambda r: r.submitted_at)


def load_catalogue(path: str | Path) -> list[CatalogueItem]:
    return [CatalogueItem.model_validate(row) for row in _read_jsonl(path)]


def replay(
    requests: Sequence[Need],
    catalogue: Sequence[CatalogueItem],
    *,
    settings: Settings | None = None,
    glossary: Glossary | None = None,
    decisions: dict[str, Decision] | None = None,
) -> dict[str, Prediction]:
    """Predict every request in submission order using only what came before it.

    IDF statistics grow with the replay: the catalogue, then each request as it arrives (the request
    being judged is counted, as a live system would after storing it). Pass ``decisions`` to collect
    the full ``Decision`` objects too.
    """
    g = glossary or default_glossary()
    stats = CorpusStats.from_texts((a.text for a in catalogue), g)
    ordered = sorted(requests, key=lambda r: r.submitted_at)
    prior: dict[str, PriorOutcome] = {}
    out: dict[str, Prediction] = {}
    seen: list[Need] = []
    for r in ordered:
        stats.add(r.text, g)
        earlier = [e for e in seen if e.submitted_at < r.submitted_at]
        d = decide(r, earlier, catalogue, prior, stats=stats, settings=settings, glossary=g)
        if decisions is not None:
            decisions[r.id] = d
        out[r.id] = Prediction(duplicate_of=d.duplicate_of, consolidate_with=list(d.consolidate_with))
        prior[r.id] = PriorOutcome(duplicate_of=d.duplicate_of, consolidate_with=tuple(d.consolidate_with))
        seen.append(r)
    return out


def prf(gold: set[Any], pred: set[Any]) -> tuple[float, float, float]:
    tp = len(gold & pred)
    p = tp / len(pred) if pred else 1.0
    r = tp / len(gold) if gold else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _prf(gold: set[Any], pred: set[Any]) -> PRF:
    p, r, f = prf(gold, pred)
    return PRF(precision=p, recall=r, f1=f, gold=len(gold), predicted=len(pred), correct=len(gold & pred))


def score(
    gold: Iterable[LabelledNeed],
    predictions: Mapping[str, Prediction],
    only: Iterable[str] | None = None,
) -> Report:
    """P/R/F1 for duplicates and consolidation, exactly as the reference README computes them.

    ``only`` restricts the rows counted (e.g. a held-out half): gold and predicted pairs then come from
    those requests' labels and outputs only; pairs touching any gold duplicate are still dropped.
    """
    all_labels = {x.id: x.label for x in gold if x.label is not None}
    keep = set(all_labels) if only is None else set(only) & set(all_labels)
    labels = {i: lab for i, lab in all_labels.items() if i in keep}
    preds = {i: o for i, o in predictions.items() if i in keep}

    dups = {i for i, lab in all_labels.items() if lab.duplicate_of}
    gold_dup = {(i, lab.duplicate_of) for i, lab in labels.items() if lab.duplicate_of}
    pred_dup = {(i, o.duplicate_of) for i, o in preds.items() if o.duplicate_of}
    gold_con = {frozenset((i, c)) for i, lab in labels.items() for c in lab.consolidate_with}
    pred_con = {frozenset((i, c)) for i, o in preds.items() for c in o.consolidate_with}
    gold_con = {p for p in gold_con if not p & dups}
    pred_con = {p for p in pred_con if not p & dups}

    hard = {i for i, lab in labels.items() if lab.note.startswith("Hard negative")}
    flagged = sorted(i for i in hard if preds.get(i) is not None and preds[i].duplicate_of)
    return Report(
        duplicates=_prf(gold_dup, pred_dup),
        consolidation=_prf(gold_con, pred_con),
        hard_negatives=len(hard),
        hard_negatives_flagged=len(flagged),
        flagged_hard_negative_ids=flagged,
    )
