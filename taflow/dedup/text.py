"""Text normalisation for duplicate detection: tokens, stems, glossary concepts.

Pipeline (``analyze``): split into words (keeping the original case), map British spellings to
American ones, stem (Porter), replace glossary terms (acronyms, expansions, synonyms; longest match
first) by one concept token ``@<concept>``, drop stop words and "neutral" words that only say who is
asking. The result is a list of terms for a bag-of-words comparison.

Pure functions, no I/O except loading the packaged glossary once (``default_glossary``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from pathlib import Path

CONCEPT_PREFIX = "@"

_WORD_RE = re.compile(r"[A-Za-z0-9]+")

STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all also am an and any are around as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has have
    having he her here hers him his how i if in into is it its itself just me more most my no nor not now of
    off on once only or other our ours out over own same she should so some such than that the their theirs
    them then there these they this those through to too under until up very was we were what when where
    which while who whom why will with you your yours us via per within without among across upon well still
    already since however therefore thus etc e g eg ie i e one two three four five six seven eight nine ten
    first second third many much several new current currently way ways include includes including included
    make makes made use used uses using based set sets like may might must shall would should could
    year years month months week weeks day days time q1 q2 q3 q4 quarter late early mid end start
    january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec
    """.split()
)


# --------------------------------------------------------------------------------------------- stemming
def _cons(word: str, i: int) -> bool:
    ch = word[i]
    if ch in "aeiou":
        return False
    if ch == "y":
        return i == 0 or not _cons(word, i - 1)
    return True


def _measure(stem: str) -> int:
    """Porter's m: the number of VC sequences in ``stem``."""
    m = 0
    i = 0
    n = len(stem)
    while i < n and _cons(stem, i):
        i += 1
    while i < n:
        while i < n and not _cons(stem, i):
            i += 1
        if i >= n:
            break
        while i < n and _cons(stem, i):
            i += 1
        m += 1
    return m


def _has_vowel(stem: str) -> bool:
    return any(not _cons(stem, i) for i in range(len(stem)))


def _double_cons(word: str) -> bool:
    return len(word) >= 2 and word[-1] == word[-2] and _cons(word, len(word) - 1)


def _cvc(word: str) -> bool:
    if len(word) < 3:
        return False
    return (
        _cons(word, len(word) - 3)
        and not _cons(word, len(word) - 2)
        and _cons(word, len(word) - 1)
        and word[-1] not in "wxy"
    )


_STEP2 = (
    ("ational", "ate"),
    ("tional", "tion"),
    ("enci", "ence"),
    ("anci", "ance"),
    ("izer", "ize"),
    ("abli", "able"),
    ("alli", "al"),
    ("entli", "ent"),
    ("eli", "e"),
    ("ousli", "ous"),
    ("ization", "ize"),
    ("ation", "ate"),
    ("ator", "ate"),
    ("alism", "al"),
    ("iveness", "ive"),
    ("fulness", "ful"),
    ("ousness", "ous"),
    ("aliti", "al"),
    ("iviti", "ive"),
    ("biliti", "ble"),
)
_STEP3 = (
    ("icate", "ic"),
    ("ative", ""),
    ("alize", "al"),
    ("iciti", "ic"),
    ("ical", "ic"),
    ("ful", ""),
    ("ness", ""),
)
_STEP4 = (
    "al",
    "ance",
    "ence",
    "er",
    "ic",
    "able",
    "ible",
    "ant",
    "ement",
    "ment",
    "ent",
    "ion",
    "ou",
    "ism",
    "ate",
    "iti",
    "ous",
    "ive",
    "ize",
)


def _step1(w: str) -> str:
    # step 1a
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies"):
        w = w[:-2]
    elif w.endswith("ss"):
        pass
    elif w.endswith("s"):
        w = w[:-1]
    # step 1b
    extra = False
    if w.endswith("eed"):
        if _measure(w[:-3]) > 0:
            w = w[:-1]
    elif w.endswith("ed") and _has_vowel(w[:-2]):
        w = w[:-2]
        extra = True
    elif w.endswith("ing") and _has_vowel(w[:-3]):
        w = w[:-3]
        extra = True
    if extra:
        if w.endswith(("at", "bl", "iz")):
            w += "e"
        elif _double_cons(w) and w[-1] not in "lsz":
            w = w[:-1]
        elif _measure(w) == 1 and _cvc(w):
            w += "e"
    # step 1c
    if w.endswith("y") and _has_vowel(w[:-1]):
        w = w[:-1] + "i"
    return w


@lru_cache(maxsize=65536)
def light_stem(word: str) -> str:
    """Inflection only (Porter step 1: plurals, -ed, -ing): keeps "accession" apart from "access"."""
    if len(word) <= 2 or not word.isalpha():
        return word
    return _step1(word)


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Porter (1980) stemmer for a lower-case ASCII word; short words and numbers are kept."""
    if len(word) <= 2 or not word.isalpha():
        return word
    w = _step1(word)
    # step 2
    for suf, rep in _STEP2:
        if w.endswith(suf):
            if _measure(w[: -len(suf)]) > 0:
                w = w[: -len(suf)] + rep
            break
    # step 3
    for suf, rep in _STEP3:
        if w.endswith(suf):
            if _measure(w[: -len(suf)]) > 0:
                w = w[: -len(suf)] + rep
            break
    # step 4
    for suf in _STEP4:
        if w.endswith(suf):
            base = w[: -len(suf)]
            if _measure(base) > 1 and (suf != "ion" or base.endswith(("s", "t"))):
                w = base
            break
    # step 5
    if w.endswith("e"):
        base = w[:-1]
        m = _measure(base)
        if m > 1 or (m == 1 and not _cvc(base)):
            w = base
    if w.endswith("ll") and _measure(w) > 1:
        w = w[:-1]
    return w


_IZE_RE = re.compile(r"(?<=[a-z]{3})is(e|es|ed|ing|er|ers|ation|ations)$")


def spell(word: str, spelling: Mapping[str, str]) -> str:
    """Lower-case, British -> American spelling (listed words, then the -ise/-isation family)."""
    w = word.lower()
    w = spelling.get(w, w)
    return _IZE_RE.sub(lambda m: "iz" + m.group(1), w)


def normalise_word(word: str, spelling: Mapping[str, str]) -> str:
    """Lower-case, British -> American spelling, then stem."""
    s = stem(spell(word, spelling))
    # Porter leaves verb and noun of the -ify family apart (identify/identification, verify/verification)
    if s.endswith("ifi") and len(s) > 4:
        s = s[:-1]
    elif s.endswith("ific") and len(s) > 5:
        s = s[:-2]
    return s


# --------------------------------------------------------------------------------------------- glossary
@dataclass(frozen=True)
class Concept:
    id: str
    label: str
    terms: tuple[str, ...]


@dataclass(frozen=True)
class _Pattern:
    stems: tuple[str, ...]
    target: str  # concept token, or "" for a neutral (dropped) span
    acronym: bool  # single upper-case term: only matches an upper-case word in the text


@dataclass(frozen=True, eq=False)
class Glossary:
    """Acronyms, expansions, synonyms (concepts), spelling variants and neutral words."""

    concepts: Mapping[str, Concept]
    spelling: Mapping[str, str]
    neutral: tuple[str, ...]
    families: Mapping[str, frozenset[str]] = field(default_factory=dict)
    resubmission: tuple[tuple[str, ...], ...] = ()
    modality_groups: Mapping[str, str] = field(default_factory=dict)
    _patterns: Mapping[str, tuple[_Pattern, ...]] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def family_index(self) -> Mapping[str, tuple[str, ...]]:
        """For each term, the families it belongs to (so a comparison looks only at those)."""
        index: dict[str, list[str]] = {}
        for fid, members in self.families.items():
            for term in members:
                index.setdefault(term, []).append(fid)
        return {t: tuple(f) for t, f in index.items()}

    @cached_property
    def family_order(self) -> Mapping[str, int]:
        return {fid: i for i, fid in enumerate(self.families)}

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> Glossary:
        concepts_raw = data.get("concepts", {})
        spelling_raw = data.get("spelling", {})
        neutral_raw = data.get("neutral", {})
        if not isinstance(concepts_raw, Mapping) or not isinstance(spelling_raw, Mapping):
            raise ValueError("glossary: [concepts] and [spelling] must be tables")
        spelling = {str(k).lower(): str(v).lower() for k, v in spelling_raw.items()}
        concepts: dict[str, Concept] = {}
        for cid, body in concepts_raw.items():
            if not isinstance(body, Mapping) or not isinstance(body.get("terms"), list):
                raise ValueError(f"glossary: concept {cid!r} needs a list of terms")
            concepts[str(cid)] = Concept(
                id=str(cid), label=str(body.get("label", cid)), terms=tuple(str(t) for t in body["terms"])
            )
        neutral: tuple[str, ...] = ()
        if isinstance(neutral_raw, Mapping) and isinstance(neutral_raw.get("terms"), list):
            neutral = tuple(str(t) for t in neutral_raw["terms"])
        families: dict[str, frozenset[str]] = {}
        families_raw = data.get("families", {})
        if isinstance(families_raw, Mapping):
            for fid, members in families_raw.items():
                if not isinstance(members, list) or any(str(m) not in concepts for m in members):
                    raise ValueError(f"glossary: family {fid!r} must list known concept ids")
                families[str(fid)] = frozenset(CONCEPT_PREFIX + str(m) for m in members)
        markers_raw = data.get("markers", {})
        resub: list[tuple[str, ...]] = []
        if isinstance(markers_raw, Mapping) and isinstance(markers_raw.get("resubmission"), list):
            for phrase in markers_raw["resubmission"]:
                ws = _WORD_RE.findall(str(phrase))
                if ws:
                    resub.append(tuple(light_stem(spell(w, spelling)) for w in ws))
        modality_groups: dict[str, str] = {}
        modalities_raw = data.get("modalities", {})
        if isinstance(modalities_raw, Mapping):
            for gid, members in modalities_raw.items():
                if isinstance(members, list):
                    for m in members:
                        modality_groups[normalise_modality(str(m))] = str(gid)
        patterns: dict[str, list[_Pattern]] = {}

        def add(term: str, target: str) -> None:
            words = _WORD_RE.findall(term)
            if not words:
                return
            acronym = len(words) == 1 and words[0].isupper() and len(words[0]) > 1
            stems = tuple(light_stem(spell(w, spelling)) for w in words)
            patterns.setdefault(stems[0], []).append(_Pattern(stems, target, acronym))

        for c in concepts.values():
            for t in c.terms:
                add(t, CONCEPT_PREFIX + c.id)
        for t in neutral:
            add(t, "")
        frozen = {k: tuple(sorted(v, key=lambda p: -len(p.stems))) for k, v in patterns.items()}
        return cls(
            concepts=concepts,
            spelling=spelling,
            neutral=neutral,
            families=families,
            resubmission=tuple(resub),
            modality_groups=modality_groups,
            _patterns=frozen,
        )

    def modality_group(self, modality: str) -> str:
        """The kind of help a modality gives (``group_learning``, ``advisory``...), else itself."""
        m = normalise_modality(modality)
        return self.modality_groups.get(m, m)

    def label(self, term: str) -> str:
        """Reviewer-readable form of an analysed term (concept label, or the stem itself)."""
        if term.startswith(CONCEPT_PREFIX):
            c = self.concepts.get(term[len(CONCEPT_PREFIX) :])
            return c.label if c else term[len(CONCEPT_PREFIX) :]
        return term

    def match(self, words: Sequence[str], stems: Sequence[str], i: int) -> tuple[int, str] | None:
        """The longest glossary pattern starting at position ``i`` (``stems`` are light stems)."""
        for p in self._patterns.get(stems[i], ()):
            n = len(p.stems)
            if tuple(stems[i : i + n]) != p.stems:
                continue
            if p.acronym and not _is_upper_word(words[i]):
                continue
            return n, p.target
        return None


def normalise_modality(modality: str) -> str:
    """``expert_mission`` / ``Expert mission`` -> ``expert mission``."""
    return " ".join(modality.replace("_", " ").replace("-", " ").lower().split())


def _is_upper_word(word: str) -> bool:
    core = word[:-1] if len(word) > 2 and word.endswith("s") else word
    return core.isupper()


GLOSSARY_PATH = Path(__file__).with_name("glossary.toml")


@cache
def default_glossary() -> Glossary:
    """The packaged customs glossary (``glossary.toml`` beside this module), loaded once."""
    with GLOSSARY_PATH.open("rb") as f:
        return Glossary.from_mapping(tomllib.load(f))


# --------------------------------------------------------------------------------------------- analysis
def words(text: str) -> list[str]:
    """Alphanumeric words in order, original case kept (hyphens and slashes split)."""
    return _WORD_RE.findall(text)


def analyze(text: str, glossary: Glossary | None = None, *, keep_words: bool = True) -> list[str]:
    """Terms of ``text``: stems of content words and ``@concept`` tokens, in order.

    With ``keep_words`` the content words of a matched multi-word term are kept after its concept
    token, so that two overlapping phrasings ("air express cargo", "express air cargo") still share
    their words; acronyms and single-word synonyms are replaced by the concept alone.
    """
    g = glossary or default_glossary()
    ws = words(text)
    keys = [light_stem(spell(w, g.spelling)) for w in ws]
    stems = [normalise_word(w, g.spelling) for w in ws]
    out: list[str] = []
    i = 0
    n = len(ws)
    while i < n:
        hit = g.match(ws, keys, i)
        if hit is not None:
            length, target = hit
            if target:
                out.append(target)
                if keep_words and length > 1:
                    out.extend(
                        s
                        for w, s in zip(ws[i : i + length], stems[i : i + length], strict=True)
                        if _content(w, s)
                    )
            i += length
            continue
        if _content(ws[i], stems[i]):
            out.append(stems[i])
        i += 1
    return out


def _content(word: str, stemmed: str) -> bool:
    return (
        word.lower() not in STOPWORDS
        and stemmed not in STOPWORDS
        and len(stemmed) > 1
        and not stemmed.isdigit()
    )


def index_text(text: str, glossary: Glossary | None = None) -> str:
    """The analysed terms as one string, for a full-text or trigram index over the expanded text
    (concept tokens keep their ``@`` prefix, e.g. ``@aeo``, so "AEO" finds "authorised economic operator")."""
    return " ".join(analyze(text, glossary))


def says_resubmitted(text: str, glossary: Glossary | None = None) -> bool:
    """Whether the text says it restates an earlier request ("asks again", "repeats its request")."""
    g = glossary or default_glossary()
    keys = [light_stem(spell(w, g.spelling)) for w in words(text)]
    for phrase in g.resubmission:
        n = len(phrase)
        if any(tuple(keys[i : i + n]) == phrase for i in range(len(keys) - n + 1)):
            return True
    return False


def family_conflicts(a: Iterable[str], b: Iterable[str], glossary: Glossary | None = None) -> list[str]:
    """Families in which ``a`` and ``b`` name different members and none in common (different needs)."""
    g = glossary or default_glossary()
    sa, sb = set(a), set(b)
    index = g.family_index
    touched = {fid for t in sa for fid in index.get(t, ())} & {fid for t in sb for fid in index.get(t, ())}
    out: list[str] = []
    for fid in sorted(touched, key=g.family_order.__getitem__):  # in the glossary's order
        members = g.families[fid]
        if not (sa & members) & (sb & members):
            out.append(fid)
    return out


_SENTENCE_RE = re.compile(r"(?<=[.!?;])\s+")
_REQUEST_CUE_RE = re.compile(
    r"\b(request|requests|requested|ask|asks|asking|seek|seeks|would like|would welcome|we need|we want|"
    r"wants|needs help|support for|help to|help with)\b",
    re.IGNORECASE,
)


def need_core(title: str, description: str) -> str:
    """The part of a request that names the need: the title and the sentences asking for help.

    Requests follow a pattern (context, problem, help wanted, expected outcome); the help-wanted
    sentence carries the need, the context varies between resubmissions. Without such a sentence
    (e.g. a catalogue activity) the first sentence of the description is used.
    """
    sentences = [s for s in _SENTENCE_RE.split(description.strip()) if s]
    asking = [s for s in sentences if _REQUEST_CUE_RE.search(s)]
    if not asking and sentences:
        asking = sentences[:1]
    return "\n".join([title, *asking])


def concepts_in(terms: Iterable[str]) -> set[str]:
    """The concept tokens among analysed terms."""
    return {t for t in terms if t.startswith(CONCEPT_PREFIX)}
