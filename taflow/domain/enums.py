"""Reference enums: the vocabulary every organisation shares. Values are what the API and Temporal carry."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where a TA request stands (DESIGN section 2)."""

    submitted = "submitted"
    dedup_check = "dedup_check"
    asec_review = "asec_review"
    changes_requested = "changes_requested"
    rocb_matching = "rocb_matching"
    on_hold = "on_hold"
    expert_invitation = "expert_invitation"
    scheduled = "scheduled"
    awaiting_report = "awaiting_report"
    completed = "completed"
    rejected = "rejected"
    duplicate = "duplicate"
    consolidated = "consolidated"
    withdrawn = "withdrawn"
    cancelled = "cancelled"
    expired = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STAGES

    @property
    def is_open(self) -> bool:
        return not self.is_terminal


TERMINAL_STAGES = frozenset(
    {
        Stage.completed,
        Stage.rejected,
        Stage.duplicate,
        Stage.consolidated,
        Stage.withdrawn,
        Stage.cancelled,
        Stage.expired,
    }
)


class MemberState(StrEnum):
    """ASEAN Member States, ISO 3166 alpha-2 (Timor-Leste joined in Oct 2025)."""

    BN = "BN"
    KH = "KH"
    ID = "ID"
    LA = "LA"
    MY = "MY"
    MM = "MM"
    PH = "PH"
    SG = "SG"
    TH = "TH"
    VN = "VN"
    TL = "TL"


class Topic(StrEnum):
    """Topic taxonomy (slugs); starts from the labelled reference set."""

    risk_management = "risk-management"
    post_clearance_audit = "post-clearance-audit"
    aeo_mra = "aeo-mra"
    ipr_enforcement = "ipr-enforcement"
    e_commerce = "e-commerce"
    green_customs = "green-customs"
    environmental_crime = "environmental-crime"
    digitalization = "digitalization"
    asean_single_window = "asean-single-window"
    smart_customs_ai = "smart-customs-ai"
    data_analytics = "data-analytics"
    illicit_trade = "illicit-trade"
    drug_trafficking = "drug-trafficking"
    precursors = "precursors"
    wildlife_trafficking = "wildlife-trafficking"
    hs_classification = "hs-classification"
    customs_valuation = "customs-valuation"
    rules_of_origin = "rules-of-origin"
    time_release_study = "time-release-study"
    coordinated_border_management = "coordinated-border-management"
    revised_kyoto_convention = "revised-kyoto-convention"
    wto_tfa = "wto-tfa"
    integrity = "integrity"
    strategic_trade_controls = "strategic-trade-controls"
    passenger_risk = "passenger-risk"
    nii_scanners = "nii-scanners"
    timor_leste_accession = "timor-leste-accession"
    transit = "transit"


class Modality(StrEnum):
    """How assistance is delivered. The labelled set writes these with spaces; `parse` accepts both."""

    expert_mission = "expert_mission"
    workshop = "workshop"
    training = "training"
    diagnostic_mission = "diagnostic_mission"
    study_visit = "study_visit"
    webinar = "webinar"

    @classmethod
    def parse(cls, text: str) -> Modality:
        return cls(text.strip().lower().replace(" ", "_").replace("-", "_"))


class SpcdPriority(StrEnum):
    """Priorities of ASEAN's Strategic Plan of Customs Development 2026-30."""

    circular_economy = "circular-economy"
    green_customs = "green-customs"
    digitalization = "digitalization"
    e_commerce = "e-commerce"
    combating_illicit_trade = "combating-illicit-trade"


class Role(StrEnum):
    requester = "requester"
    asec_reviewer = "asec_reviewer"
    asec_head = "asec_head"
    rocb_officer = "rocb_officer"
    expert = "expert"
    ops = "ops"
    admin = "admin"


class Organisation(StrEnum):
    """Non-member organisations; member states use their ISO code as organisation id."""

    ASEC = "ASEC"
    ROCB_AP = "ROCB-AP"
    WCO = "WCO"


ORGANISATION_IDS: tuple[str, ...] = tuple(m.value for m in MemberState) + tuple(o.value for o in Organisation)


class AsecVerdict(StrEnum):
    approve = "approve"
    reject = "reject"
    request_changes = "request_changes"
    duplicate = "duplicate"
    consolidate = "consolidate"
    dismiss = "dismiss"
    """Dismiss suspected duplicate candidates (all, or those listed): recorded, never raised again."""


class RocbVerdict(StrEnum):
    match = "match"
    no_match = "no_match"


class InvitationStatus(StrEnum):
    pending = "pending"
    accepted = "accepted"
    declined = "declined"
    expired = "expired"
    cancelled = "cancelled"


class DedupVerdict(StrEnum):
    clear = "clear"
    duplicate_suspected = "duplicate_suspected"
    consolidation_suggested = "consolidation_suggested"


class CandidateKind(StrEnum):
    request = "request"
    activity = "activity"
