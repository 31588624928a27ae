"""Lists (WCO FoS Standards 7 and 10): watchlisted parties, IPR-protected brands, trusted operators.

Targeting officers keep the lists as data (``settings/lists/``); this module folds every name,
address and brand once at load and indexes it, so a filing costs a few dictionary probes and,
only for names not seen before, a fuzzy comparison against a small block of candidates.

Matching choices, and why:

* Names and addresses are folded (case, accents, punctuation, legal forms such as "Co., Ltd.")
  and their words sorted, then compared with rapidfuzz ``ratio``, which on sorted words is
  ``token_sort_ratio``: it forgives typos and swapped words ("Schmidt Anna") but, unlike
  ``WRatio`` or ``token_set_ratio``, does not score a short name found inside a longer one
  ("Star Trading" in "Bright Star Trading") as a near-perfect match, a false hit on every
  trader with a common word in its name.
* Candidates are the entries sharing a word, or a word's first three letters, with the name
  (common words excepted), so one typo anywhere still finds the entry and a name shares
  nothing with most of a 10,000-entry list. Addresses are blocked on their numbers: an
  address matches only when every number of the listed one (house number, postcode) is in it,
  because "12 Main St" and "13 Main St" are 90 % alike and different doors.
* Results are cached per distinct normalised string: sellers and repeat buyers recur.

Watchlist and IPR reasons are internal (``carrier_visible`` False); trust reasons are shown to
the carrier, which knows its own facilitation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from itertools import combinations
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import yaml
from rapidfuzz import fuzz, process

from greenlane.streams.domain.money import convert
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL, PRE_LOADING
from greenlane.streams.settings import SETTINGS_DIR, ConfigError

LISTS_DIR = SETTINGS_DIR / "lists"
MATCHING_FILE = "matching.yaml"
PARTIES_FILE = "watchlist_parties.yaml"
BRANDS_FILE = "ipr_brands.yaml"
TRUSTED_FILE = "trusted_operators.yaml"
ROLES = ("seller", "shipper", "consignee")
# The parties of each stage, by record field (the field name is also the watchlist role).
PARTY_FIELDS = {PRE_ARRIVAL: ("seller", "consignee"), PRE_LOADING: ("shipper", "consignee")}
# Numbers of an address considered for blocking (2^n lookups): a street address has 2 or 3.
MAX_ADDRESS_NUMBERS = 6
PREFIX_LETTERS = 3
MAX_OTHER_HITS_SHOWN = 3

_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_JOINERS = re.compile("['\u2019`\u00b4.]")  # O'Brien -> obrien, Co. -> co, S.A. -> sa
_SEPARATORS = re.compile(r"[\W_]+")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# ------------------------------------------------------------------------------------------
# Reading list files: every error names the file, the entry and the field.
# ------------------------------------------------------------------------------------------


class _Fields:
    """One mapping from a list file; accessors raise ConfigError naming where and what."""

    def __init__(self, data: Any, where: str, known: Iterable[str]):
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {data!r}")
        known = set(known)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        self.data = data
        self.where = where

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def fail(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"{self.where}.{key}: {what}")

    def text(self, key: str, required: bool = True) -> str | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            raise self.fail(key, f"expected a non-empty text, got {value!r}")
        return str(value).strip()

    def number(
        self,
        key: str,
        default: float | None = None,
        low: float | None = None,
        high: float | None = None,
    ) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.fail(key, f"{value!r} is outside [{low}, {high}]")
        return float(value)

    def integer(self, key: str, low: int) -> int:
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(key, f"expected an integer >= {low}, got {value!r}")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(
            isinstance(v, str | int) and not isinstance(v, bool) and str(v).strip() for v in value
        ):
            raise self.fail(key, f"expected a list of non-empty texts, got {value!r}")
        return tuple(str(v).strip() for v in value)

    def sub(self, key: str, known: Iterable[str]) -> _Fields:
        if key not in self.data:
            raise self.fail(key, "missing")
        return _Fields(self.data[key], f"{self.where}.{key}", known)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value


def _read_yaml(path: Path) -> Any:
    try:
        # libyaml's loader when built in: a 10,000-entry list loads in a fraction of the time.
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: list file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def _entries(data: Any, key: str, where: str) -> list[tuple[str, Any]]:
    """The entries under ``key`` with the location each error should name."""
    value = data.get(key) if isinstance(data, dict) else None
    if value is None:
        value = []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {key}: expected a list of entries")
    located = []
    for i, spec in enumerate(value):
        label = spec.get("id") if isinstance(spec, dict) else None
        located.append((f"{where}: {key}[{i}]" + (f" ({label})" if label else ""), spec))
    return located


def _unique_ids(ids: Iterable[str], where: str) -> None:
    seen: set[str] = set()
    for entry_id in ids:
        if entry_id in seen:
            raise ConfigError(f"{where}: duplicate entry id {entry_id!r}")
        seen.add(entry_id)


def _country(f: _Fields, key: str = "country") -> str | None:
    code = f.text(key, required=False)
    if code is None:
        return None
    if not (len(code) == 2 and code.isascii() and code.isalpha() and code.isupper()):
        raise f.fail(key, f"expected an ISO 3166-1 alpha-2 code such as 'CN', got {code!r}")
    return code


# ------------------------------------------------------------------------------------------
# Normalisation
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Normaliser:
    """Folds names and addresses so that spelling variants of one party compare equal."""

    legal_forms: tuple[tuple[int, frozenset[tuple[str, ...]]], ...]  # by length, longest first
    transliterate: Mapping[int, str]
    address_words: Mapping[str, str]
    address_suffixes: tuple[tuple[str, str], ...]
    generic_words: frozenset[str] = frozenset()  # "trading", "electronic": say little of who

    def fold(self, text: str) -> str:
        """Lower case, no accents, punctuation as spaces: 'Müller & Co.' -> 'muller and co'."""
        text = unicodedata.normalize("NFKD", text.casefold().translate(self.transliterate))
        text = _JOINERS.sub("", _COMBINING.sub("", text)).replace("&", " and ")
        return _SEPARATORS.sub(" ", text).strip()

    def name_words(self, text: str) -> list[str]:
        """The folded words of a party name without trailing legal forms."""
        words = self.fold(text).split()
        stripped = True
        while stripped:
            stripped = False
            for n, forms in self.legal_forms:
                if len(words) > n and tuple(words[-n:]) in forms:
                    del words[-n:]
                    stripped = True
                    break
        return words

    def name_key(self, text: str) -> str:
        """What names are compared on: the normalised words, sorted."""
        return " ".join(sorted(self.name_words(text)))

    def distinctive(self, key: str) -> str:
        """A name key without its generic words: what tells one trader from another."""
        return " ".join(w for w in key.split() if w not in self.generic_words)

    def address_key(self, text: str) -> tuple[tuple[str, ...], str]:
        """(numbers, sorted words): numbers must match exactly, words fuzzily."""
        numbers, words = [], []
        for word in self.fold(text).split():
            if not word.isalpha():  # folded words are letters and digits: "12", "sw1a"
                numbers.append(word)
                continue
            word = self.address_words.get(word, word)
            for suffix, short in self.address_suffixes:
                if len(word) > len(suffix) and word.endswith(suffix):
                    word = word[: -len(suffix)] + short
                    break
            words.append(word)
        return tuple(sorted(set(numbers))), " ".join(sorted(words))


def _normaliser(f: _Fields) -> Normaliser:
    translit = f.data.get("transliterate") or {}
    if not isinstance(translit, dict) or not all(
        isinstance(k, str) and len(k) == 1 and isinstance(v, str) for k, v in translit.items()
    ):
        raise f.fail("transliterate", "expected single letters mapped to texts")
    table = {ord(k.casefold()): v for k, v in translit.items()}
    bare = Normaliser((), MappingProxyType(table), MappingProxyType({}), ())
    generic = frozenset(w for text in f.texts("generic_words") for w in bare.fold(text).split())
    by_length: dict[int, set[tuple[str, ...]]] = {}
    for form in f.texts("legal_forms"):
        words = tuple(bare.fold(form).split())
        if not words:
            raise f.fail("legal_forms", f"{form!r} is only punctuation")
        by_length.setdefault(len(words), set()).add(words)
    words_map = f.data.get("address_words") or {}
    suffixes = f.data.get("address_suffixes") or {}
    for key, mapping in (("address_words", words_map), ("address_suffixes", suffixes)):
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k.strip() for k, v in mapping.items()
        ):
            raise f.fail(key, "expected words mapped to their short form")
    return Normaliser(
        legal_forms=tuple((n, frozenset(by_length[n])) for n in sorted(by_length, reverse=True)),
        transliterate=MappingProxyType(table),
        address_words=MappingProxyType({bare.fold(k): bare.fold(v) for k, v in words_map.items()}),
        address_suffixes=tuple(
            sorted(
                ((bare.fold(k), bare.fold(v)) for k, v in suffixes.items()),
                key=lambda kv: -len(kv[0]),
            )
        ),
        generic_words=generic,
    )


# ------------------------------------------------------------------------------------------
# Fuzzy index: exact first, then rapidfuzz over a block of candidates
# ------------------------------------------------------------------------------------------


class _FuzzyIndex:
    """Listed strings found again despite typos; ``find`` returns (entry index, similarity)."""

    def __init__(
        self,
        strings: Sequence[tuple[int, str, Iterable[str]]],  # (entry index, string, block keys)
        threshold: float,
        min_fuzzy_length: int,
        max_block: int,
        exact_first: bool,
        refine: Callable[[str, str, float], float] | None = None,
    ) -> None:
        self.threshold = threshold
        self.refine = refine
        self.min_fuzzy_length = min_fuzzy_length
        self.owners = [owner for owner, _, _ in strings]
        self.choices = [text for _, text, _ in strings]
        # A text this much longer than every listed string cannot reach the threshold (the
        # ratio is at most 2*short/(short+long)): it is not compared at all, so a hostile
        # 400 KB name costs its normalisation, not a comparison with each candidate.
        longest = max((len(c) for c in self.choices), default=0)
        self.max_text = int(longest * (200 / threshold - 1)) + 1 if threshold > 0 else None
        self.exact: dict[str, tuple[int, ...]] = {}
        if exact_first:
            grouped: dict[str, list[int]] = {}
            for owner, text, _ in strings:
                grouped.setdefault(text, []).append(owner)
            self.exact = {k: tuple(dict.fromkeys(v)) for k, v in grouped.items()}
        blocks: dict[str, list[int]] = {}
        for pos, (_, _, keys) in enumerate(strings):
            for key in set(keys):
                blocks.setdefault(key, []).append(pos)
        # Blocks too common to narrow anything down are kept apart, used only as a last resort.
        self.blocks = {k: tuple(v) for k, v in blocks.items() if len(v) <= max_block}
        self.common = {k: tuple(v) for k, v in blocks.items() if len(v) > max_block}

    def find(self, text: str, keys: Iterable[str]) -> tuple[tuple[int, float], ...]:
        exact = self.exact.get(text)
        if exact:
            return tuple((owner, 100.0) for owner in exact)
        if len(text) < self.min_fuzzy_length:
            return ()
        if self.max_text is not None and len(text) > self.max_text:
            return ()
        candidates: set[int] = set()
        fallback: tuple[int, ...] | None = None
        for key in keys:
            block = self.blocks.get(key)
            if block is not None:
                candidates.update(block)
            else:
                common = self.common.get(key)
                if common is not None and (fallback is None or len(common) < len(fallback)):
                    fallback = common
        if not candidates:
            if fallback is None:
                return ()
            candidates = set(fallback)
        positions = list(candidates)
        found = process.extract(
            text,
            [self.choices[p] for p in positions],
            scorer=fuzz.ratio,
            processor=None,
            score_cutoff=self.threshold,
            limit=None,
        )
        best: dict[int, float] = {}
        for choice, score, i in found:
            if self.refine is not None:
                score = self.refine(text, choice, score)
                if score < self.threshold:
                    continue
            owner = self.owners[positions[i]]
            if score > best.get(owner, -1.0):
                best[owner] = score
        return tuple(sorted(best.items(), key=lambda kv: -kv[1]))


def _name_blocks(key: str) -> list[str]:
    """A name's block keys: its words and their first letters (one typo keeps most of them)."""
    words = key.split()
    return words + ["^" + w[:PREFIX_LETTERS] for w in words if len(w) > PREFIX_LETTERS]


def _address_blocks(numbers: tuple[str, ...]) -> list[str]:
    """Every subset of an address's numbers: a listed address needs all of its own."""
    numbers = numbers[:MAX_ADDRESS_NUMBERS]
    return [
        "|".join(subset) for n in range(1, len(numbers) + 1) for subset in combinations(numbers, n)
    ]


# ------------------------------------------------------------------------------------------
# Entries
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartyEntry:
    """A watchlisted trader or person: matched on name and/or address."""

    id: str
    name: str | None
    address: str | None
    country: str | None
    roles: frozenset[str]
    weight: float
    why: str  # internal note: never in a decision, look the id up
    require_both: bool  # name AND address must match (common person names)


@dataclass(frozen=True, slots=True)
class Brand:
    """An IPR-protected brand whose right holder asked customs to watch for counterfeits."""

    id: str
    name: str
    aliases: tuple[str, ...]
    right_holder: str
    chapters: frozenset[str]  # HS chapters where the brand matters; empty: everywhere
    weight: float
    min_unit_value: float | None  # in the reference currency: genuine goods cost at least this
    fuzzy: bool
    ambiguous: bool  # also an ordinary word ("Apple", "Coach"): needs an HS code in chapters


@dataclass(frozen=True, slots=True)
class TrustedEntry:
    """A trusted operator (Standard 7); ``reference`` (e.g. the AEO number) is shown."""

    id: str
    kind: str  # "aeo_carriers" | "accredited_platforms" | "trusted_sellers"
    label: str  # what the filing must carry: carrier id, platform, seller id or name
    country: str | None
    reference: str | None
    weight: float


@dataclass(frozen=True)
class ReasonSpec:
    code: str
    description: str
    weight: float = 0.0


def _reason_spec(f: _Fields, key: str) -> ReasonSpec:
    sub = f.sub(key, {"code", "description", "weight"})
    return ReasonSpec(sub.text("code"), sub.text("description"), sub.number("weight"))


def _party_entry(where: str, spec: Any) -> PartyEntry:
    f = _Fields(
        spec, where, {"id", "name", "address", "country", "roles", "why", "weight", "require_both"}
    )
    name, address = f.text("name", required=False), f.text("address", required=False)
    if name is None and address is None:
        raise ConfigError(f"{where}: needs a name, an address or both")
    roles = frozenset(f.texts("roles")) or frozenset(ROLES)
    if not roles <= set(ROLES):
        raise f.fail("roles", f"expected some of {list(ROLES)}, got {sorted(roles)}")
    require_both = f.flag("require_both", False)
    if require_both and (name is None or address is None):
        raise f.fail("require_both", "needs both a name and an address")
    return PartyEntry(
        id=f.text("id"),
        name=name,
        address=address,
        country=_country(f),
        roles=roles,
        weight=f.number("weight", low=0.0),
        why=f.text("why"),
        require_both=require_both,
    )


def _brand(where: str, spec: Any, default_weight: float) -> Brand:
    f = _Fields(
        spec,
        where,
        {
            "id",
            "brand",
            "aliases",
            "right_holder",
            "hs_chapters",
            "weight",
            "min_unit_value",
            "fuzzy",
            "ambiguous",
        },
    )
    chapters = f.texts("hs_chapters")
    for ch in chapters:
        if not (len(ch) == 2 and ch.isdigit() and 1 <= int(ch) <= 97):
            raise f.fail("hs_chapters", f"{ch!r} is not an HS chapter (two digits, 01-97)")
    ambiguous = f.flag("ambiguous", False)
    if ambiguous and not chapters:
        raise f.fail("ambiguous", "an ambiguous brand needs hs_chapters to tell it apart")
    return Brand(
        id=f.text("id"),
        name=f.text("brand"),
        aliases=f.texts("aliases"),
        right_holder=f.text("right_holder"),
        chapters=frozenset(chapters),
        weight=f.number("weight", default=default_weight, low=0.0),
        min_unit_value=f.number("min_unit_value", low=0.0) if f.has("min_unit_value") else None,
        fuzzy=f.flag("fuzzy", not ambiguous),
        ambiguous=ambiguous,
    )


# ------------------------------------------------------------------------------------------
# Brand index: whole-word phrases, one-letter misspellings through a deletion index
# ------------------------------------------------------------------------------------------


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


class _BrandIndex:
    """Brand names and aliases as whole words of a folded description."""

    def __init__(
        self,
        brands: Sequence[Brand],
        norm: Normaliser,
        threshold: float,
        min_fuzzy_length: int,
        ordinary: Iterable[str],
        where: str,
    ) -> None:
        self.norm = norm
        self.threshold = threshold
        self.min_fuzzy_length = min_fuzzy_length
        self.ordinary = frozenset(norm.fold(w) for w in ordinary)
        self.phrases: dict[str, int] = {}
        self.deletes: dict[str, set[str]] = {}
        for i, brand in enumerate(brands):
            for name in (brand.name, *brand.aliases):
                words = norm.fold(name).split()
                if not words:
                    raise ConfigError(f"{where}: brand {brand.id}: {name!r} has no letters")
                # "Ray-Ban" is written "ray ban" and "rayban": both are the brand.
                for phrase in {" ".join(words), "".join(words)}:
                    owner = self.phrases.setdefault(phrase, i)
                    if owner != i:
                        raise ConfigError(
                            f"{where}: brand {brand.id}: {name!r} is also brand {brands[owner].id}"
                        )
                    # Misspellings of one-word names only: "babyg" (Baby-G) is a spelling
                    # nobody writes, and one letter from "baby".
                    if brand.fuzzy and len(words) == 1 and len(phrase) >= min_fuzzy_length:
                        for variant in _deletions(phrase) | {phrase}:
                            self.deletes.setdefault(variant, set()).add(phrase)
        self.max_words = max((p.count(" ") + 1 for p in self.phrases), default=0)
        # One deletion on either side: only words within a letter of a brand's length can
        # match, so longer words are never expanded (their deletions cost length squared).
        self.max_fuzzy_word = max((len(p) for p in self.phrases), default=0) + 1

    def find(self, text: str) -> tuple[tuple[int, str, float], ...]:
        """(brand index, the words found, similarity) for each brand named in ``text``."""
        words = self.norm.fold(text).split()
        found: dict[int, tuple[str, float]] = {}
        i = 0
        while i < len(words):
            hit = self._exact(words, i)
            if hit is not None:
                brand, n = hit
                found.setdefault(brand, (" ".join(words[i : i + n]), 100.0))
                i += n
                continue
            fuzzy = self._fuzzy(words[i])
            if fuzzy is not None and fuzzy[1] > found.get(fuzzy[0], ("", -1.0))[1]:
                found[fuzzy[0]] = (words[i], fuzzy[1])
            i += 1
        return tuple((b, w, s) for b, (w, s) in found.items())

    def _exact(self, words: list[str], i: int) -> tuple[int, int] | None:
        for n in range(min(self.max_words, len(words) - i), 0, -1):
            brand = self.phrases.get(" ".join(words[i : i + n]))
            if brand is not None:
                return brand, n
        return None

    def _fuzzy(self, word: str) -> tuple[int, float] | None:
        if (
            len(word) < self.min_fuzzy_length - 1
            or len(word) > self.max_fuzzy_word
            or not word.isalpha()
            or word in self.ordinary
        ):
            return None
        best: tuple[int, float] | None = None
        for variant in _deletions(word) | {word}:
            for phrase in self.deletes.get(variant, ()):
                score = fuzz.ratio(word, phrase, score_cutoff=self.threshold)
                if score and (best is None or score > best[1]):
                    best = (self.phrases[phrase], score)
        return best


# ------------------------------------------------------------------------------------------
# The loaded lists
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lists:
    """All lists, normalised and indexed at load; ``match_batch`` reads them.

    Frozen, so a reload builds a new ``Lists`` (fresh caches) and swaps it in whole.
    """

    source: str
    versions: Mapping[str, str]  # list file -> its version
    normaliser: Normaliser
    parties: tuple[PartyEntry, ...]
    brands: tuple[Brand, ...]
    aeo_carriers: Mapping[str, TrustedEntry]  # carrier id -> entry
    platforms: Mapping[str, TrustedEntry]  # folded platform name or alias -> entry
    sellers_by_id: Mapping[str, TrustedEntry]  # seller party id -> entry
    sellers_by_name: Mapping[str, tuple[TrustedEntry, ...]]  # name key -> entries
    party_reason: ReasonSpec
    brand_reason: ReasonSpec
    price_reason: ReasonSpec
    trust_reasons: Mapping[str, ReasonSpec]  # kind -> reason
    trust_floor: float
    trust_visible: bool
    reference_currency: str
    rates: Mapping[str, float]  # currency -> units of the reference currency
    # Compiled lookups, each with its own cache.
    name_key: Callable[[str], str] = field(repr=False, compare=False)
    address_key: Callable[[str], tuple[tuple[str, ...], str]] = field(repr=False, compare=False)
    find_name: Callable[[str], tuple[tuple[int, float], ...]] = field(repr=False, compare=False)
    find_address: Callable[[tuple[tuple[str, ...], str]], tuple[tuple[int, float], ...]] = field(
        repr=False, compare=False
    )
    find_brands: Callable[[str], tuple[tuple[int, str, float], ...]] = field(
        repr=False, compare=False
    )

    def cache_info(self) -> dict[str, Any]:
        """Hits and misses of each lookup cache, for tuning ``cache_size``."""
        return {
            name: getattr(self, name).cache_info()
            for name in ("name_key", "address_key", "find_name", "find_address", "find_brands")
        }


def _versioned(path: Path, known: Iterable[str]) -> tuple[dict, str]:
    """A list file's top level, checked, and its version (every list file has one)."""
    data = _read_yaml(path)
    f = _Fields({} if data is None else data, str(path), {"version", *known})
    return f.data, f.text("version")


def _party_indexes(parties: Sequence[PartyEntry], norm: Normaliser, cfg: _Fields, where: str):
    """Name and address lookups of the watchlist, uncached (the caller caches them)."""
    min_fuzzy = cfg.integer("min_fuzzy_length", 1)
    max_block = cfg.integer("max_block", 1)
    names, addresses = [], []
    for i, entry in enumerate(parties):
        if entry.name is not None:
            key = norm.name_key(entry.name)
            if not key:
                raise ConfigError(f"{where}: entry {entry.id}.name: {entry.name!r} has no letters")
            names.append((i, key, _name_blocks(key)))
        if entry.address is not None:
            numbers, words = norm.address_key(entry.address)
            if not numbers:
                raise ConfigError(
                    f"{where}: entry {entry.id}.address: {entry.address!r} has no house number "
                    "or postcode; without one it would match a whole street"
                )
            addresses.append((i, words, ["|".join(numbers)]))
    name_threshold = cfg.number("name_threshold", low=0, high=100)

    def distinctive_too(query: str, choice: str, score: float) -> float:
        # "Tianyi Electronic Technology" is 91 % like "Xiangyu Electronic Technology": the
        # words that identify the trader must be alike too (token_set_ratio: one set of them
        # may hold a misspelled generic word the other lacks, "Suply"). The similarity shown
        # stays that of the whole names.
        q, c = norm.distinctive(query), norm.distinctive(choice)
        if not q or not c or (q == query and c == choice):
            return score
        return score if fuzz.token_set_ratio(q, c, processor=None) >= name_threshold else 0.0

    name_index = _FuzzyIndex(names, name_threshold, min_fuzzy, max_block, True, distinctive_too)
    address_index = _FuzzyIndex(
        addresses, cfg.number("address_threshold", low=0, high=100), 1, max_block, False
    )

    def find_name(key: str) -> tuple[tuple[int, float], ...]:
        return name_index.find(key, _name_blocks(key))

    def find_address(key: tuple[tuple[str, ...], str]) -> tuple[tuple[int, float], ...]:
        numbers, words = key
        return address_index.find(words, _address_blocks(numbers)) if numbers else ()

    return find_name, find_address


@cache
def protected_brand_names(folder: Path | None = None) -> tuple[str, ...]:
    """Names and aliases of the shipped IPR list's brands that are not ordinary words, lower
    case: what the risk model's ``description_brand`` feature looks for (exact words only;
    the lists stage does the fuzzy, chapter-aware matching)."""
    folder = Path(folder) if folder is not None else LISTS_DIR
    path = folder / BRANDS_FILE
    data, _ = _versioned(path, {"entries"})
    default_weight = 0.0
    names: set[str] = set()
    for where, spec in _entries(data, "entries", str(path)):
        brand = _brand(where, spec, default_weight)
        if not brand.ambiguous:
            names.update(n.lower() for n in (brand.name, *brand.aliases))
    return tuple(sorted(names))


def load_lists(
    folder: Path | None = None,
    rates: Mapping[str, float] | None = None,
    reference_currency: str | None = None,
) -> Lists:
    """Load, validate and index the lists of ``folder`` (default ``settings/lists``).

    ``rates`` (currency -> reference currency) value branded goods per unit; by default those
    of quality.toml.
    """
    folder = Path(folder) if folder is not None else LISTS_DIR
    if rates is None or reference_currency is None:
        from greenlane.streams.stages.quality import load_quality_rules

        quality_rules = load_quality_rules()
        rates = quality_rules.reference_rates if rates is None else rates
        reference_currency = reference_currency or quality_rules.reference_currency

    sections = {"normalisation", "parties", "ipr", "trusted"}
    matching, matching_version = _versioned(folder / MATCHING_FILE, sections)
    top = _Fields(matching, str(folder / MATCHING_FILE), {"version", *sections})
    norm = _normaliser(
        top.sub(
            "normalisation",
            {"legal_forms", "generic_words", "transliterate", "address_words", "address_suffixes"},
        )
    )
    party_cfg = top.sub(
        "parties",
        {
            "code",
            "description",
            "name_threshold",
            "address_threshold",
            "min_fuzzy_length",
            "max_block",
            "cache_size",
        },
    )
    ipr_cfg = top.sub(
        "ipr",
        {
            "code",
            "description",
            "default_weight",
            "fuzzy_threshold",
            "min_fuzzy_length",
            "ordinary_words",
            "cache_size",
            "price",
        },
    )
    trust_cfg = top.sub(
        "trusted",
        {"floor", "carrier_visible", "aeo_carriers", "accredited_platforms", "trusted_sellers"},
    )
    trust_kinds = ("aeo_carriers", "accredited_platforms", "trusted_sellers")
    trust_reasons = {kind: _reason_spec(trust_cfg, kind) for kind in trust_kinds}
    for kind, spec in trust_reasons.items():
        if spec.weight > 0:
            raise trust_cfg.fail(f"{kind}.weight", "trust lowers risk: expected <= 0")

    parties_path = folder / PARTIES_FILE
    pdata, parties_version = _versioned(parties_path, {"entries"})
    parties = tuple(
        _party_entry(where, spec) for where, spec in _entries(pdata, "entries", str(parties_path))
    )
    _unique_ids((p.id for p in parties), str(parties_path))

    brands_path = folder / BRANDS_FILE
    bdata, brands_version = _versioned(brands_path, {"entries"})
    default_weight = ipr_cfg.number("default_weight", low=0.0)
    brands = tuple(
        _brand(where, spec, default_weight)
        for where, spec in _entries(bdata, "entries", str(brands_path))
    )
    _unique_ids((b.id for b in brands), str(brands_path))
    brand_index = _BrandIndex(
        brands,
        norm,
        ipr_cfg.number("fuzzy_threshold", low=0, high=100),
        ipr_cfg.integer("min_fuzzy_length", 2),
        ipr_cfg.texts("ordinary_words"),
        str(brands_path),
    )

    trusted_path = folder / TRUSTED_FILE
    tdata, trusted_version = _versioned(trusted_path, trust_kinds)
    trusted = _trusted(tdata, trusted_path, trust_reasons, norm)

    cache_size = party_cfg.integer("cache_size", 1)
    find_name, find_address = _party_indexes(parties, norm, party_cfg, str(parties_path))
    return Lists(
        source=str(folder),
        versions=MappingProxyType(
            {
                MATCHING_FILE: matching_version,
                PARTIES_FILE: parties_version,
                BRANDS_FILE: brands_version,
                TRUSTED_FILE: trusted_version,
            }
        ),
        normaliser=norm,
        parties=parties,
        brands=brands,
        **trusted,
        party_reason=ReasonSpec(party_cfg.text("code"), party_cfg.text("description")),
        brand_reason=ReasonSpec(ipr_cfg.text("code"), ipr_cfg.text("description")),
        price_reason=_reason_spec(ipr_cfg, "price"),
        trust_reasons=MappingProxyType(trust_reasons),
        trust_floor=trust_cfg.number("floor", high=0.0),
        trust_visible=trust_cfg.flag("carrier_visible", True),
        reference_currency=reference_currency,
        rates=MappingProxyType(dict(rates)),
        name_key=lru_cache(cache_size)(norm.name_key),
        address_key=lru_cache(cache_size)(norm.address_key),
        find_name=lru_cache(cache_size)(find_name),
        find_address=lru_cache(cache_size)(find_address),
        find_brands=lru_cache(ipr_cfg.integer("cache_size", 1))(brand_index.find),
    )


def _trusted(data: Any, path: Path, reasons: Mapping[str, ReasonSpec], norm: Normaliser):
    """The trusted-operator lookups: exact only, a look-alike name earns no facilitation."""
    carriers: dict[str, TrustedEntry] = {}
    platforms: dict[str, TrustedEntry] = {}
    by_id: dict[str, TrustedEntry] = {}
    by_name: dict[str, list[TrustedEntry]] = {}
    common = {"id", "reference", "note", "weight"}
    keys = {
        "aeo_carriers": {"carrier_id"},
        "accredited_platforms": {"platform", "aliases"},
        "trusted_sellers": {"party_id", "name", "country"},
    }
    all_ids = []
    for kind, own in keys.items():
        for where, spec in _entries(data, kind, str(path)):
            f = _Fields(spec, where, common | own)
            entry_id = f.text("id")
            all_ids.append(entry_id)
            weight = f.number("weight", default=reasons[kind].weight, high=0.0)
            reference = f.text("reference", required=False)
            if kind == "aeo_carriers":
                carrier = f.text("carrier_id")
                carriers[carrier.upper()] = TrustedEntry(
                    entry_id, kind, carrier, None, reference, weight
                )
            elif kind == "accredited_platforms":
                platform = f.text("platform")
                item = TrustedEntry(entry_id, kind, platform, None, reference, weight)
                for label in (platform, *f.texts("aliases")):
                    platforms[norm.fold(label)] = item
            else:
                party_id, name = f.text("party_id", required=False), f.text("name", required=False)
                if party_id is None and name is None:
                    raise ConfigError(f"{where}: needs a party_id, a name or both")
                item = TrustedEntry(
                    entry_id, kind, name or party_id, _country(f), reference, weight
                )
                if party_id is not None:
                    by_id[party_id.upper()] = item
                if name is not None:
                    key = norm.name_key(name)
                    if not key:
                        raise f.fail("name", f"{name!r} has no letters")
                    by_name.setdefault(key, []).append(item)
    _unique_ids(all_ids, str(path))
    return {
        "aeo_carriers": MappingProxyType(carriers),
        "platforms": MappingProxyType(platforms),
        "sellers_by_id": MappingProxyType(by_id),
        "sellers_by_name": MappingProxyType({k: tuple(v) for k, v in by_name.items()}),
    }


# ------------------------------------------------------------------------------------------
# Matching filings
# ------------------------------------------------------------------------------------------


def _reason(spec: ReasonSpec, contribution: float, evidence: str, visible: bool) -> dict:
    return {
        "code": spec.code,
        "description": spec.description,
        "contribution": contribution,
        "evidence": evidence,
        "carrier_visible": visible,
    }


def _party_reason(role: str, party: dict, lists: Lists) -> dict | None:
    """The watchlist reason for one party: its strongest hit, naming the others."""
    names = lists.find_name(lists.name_key(party["name"])) if party.get("name") else ()
    addresses = (
        lists.find_address(lists.address_key(party["address"])) if party.get("address") else ()
    )
    if not names and not addresses:
        return None
    sims: dict[int, list[float | None]] = {}
    for i, score in names:
        sims.setdefault(i, [None, None])[0] = score
    for i, score in addresses:
        sims.setdefault(i, [None, None])[1] = score
    country = (party.get("country") or "").upper()
    hits = []
    for i, (name_sim, address_sim) in sims.items():
        entry = lists.parties[i]
        if role not in entry.roles or (entry.country and entry.country != country):
            continue
        if entry.require_both and (name_sim is None or address_sim is None):
            continue
        hits.append((entry, name_sim, address_sim))
    if not hits:
        return None
    hits.sort(key=lambda h: (-h[0].weight, -max(s or 0.0 for s in h[1:])))
    entry, name_sim, address_sim = hits[0]
    parts = []
    if name_sim is not None:
        parts.append(
            f"{role} '{party['name']}' ~ watchlist {entry.id} '{entry.name}' "
            f"(similarity {round(name_sim)})"
        )
    if address_sim is not None:
        lead = f"{role} address" if not parts else "address"
        parts.append(
            f"{lead} '{party['address']}' ~ watchlist {entry.id} address '{entry.address}' "
            f"(similarity {round(address_sim)})"
        )
    evidence = "; ".join(parts)
    if len(hits) > 1:
        others = ", ".join(h[0].id for h in hits[1 : 1 + MAX_OTHER_HITS_SHOWN])
        more = len(hits) - 1 - MAX_OTHER_HITS_SHOWN
        evidence += f"; also {others}" + (f" and {more} more" if more > 0 else "")
    return _reason(lists.party_reason, entry.weight, evidence, False)


class _GoodsLine(NamedTuple):
    label: str  # "item 2", "cargo description"
    text: str
    hs_code: str | None
    unit_value: float | None  # reference currency
    per_kg: float | None


class _BrandHit(NamedTuple):
    brand: Brand
    line: _GoodsLine
    words: str  # as found in the description
    similarity: float


def _goods_lines(record: dict, stage: str, lists: Lists) -> list[_GoodsLine]:
    if stage == PRE_LOADING:
        text = record.get("cargo_description") or ""
        return [_GoodsLine("cargo description", text, record.get("hs_code"), None, None)]
    lines = []
    for n, item in enumerate(record.get("items") or (), start=1):
        value = convert(item.get("value"), item.get("currency"), lists.rates)
        unit = per_kg = None
        if value is not None:
            if item.get("quantity"):
                unit = value / item["quantity"]
            if item.get("net_weight_kg"):
                per_kg = value / item["net_weight_kg"]
        lines.append(
            _GoodsLine(
                f"item {n}", item.get("description") or "", item.get("hs_code"), unit, per_kg
            )
        )
    return lines


def _brand_hits(record: dict, stage: str, lists: Lists) -> list[_BrandHit]:
    hits = []
    for line in _goods_lines(record, stage, lists):
        if not line.text:
            continue
        for i, words, similarity in lists.find_brands(line.text):
            brand = lists.brands[i]
            if brand.chapters and (
                line.hs_code[:2] not in brand.chapters if line.hs_code else brand.ambiguous
            ):
                continue  # "Apple" in chapter 08 is fruit; without an HS code, maybe too
            hits.append(_BrandHit(brand, line, words, similarity))
    return hits


def _brand_reasons(record: dict, stage: str, lists: Lists) -> list[dict]:
    """One IPR reason for the strongest brand found, and one more if its price gives it away."""
    hits = _brand_hits(record, stage, lists)
    if not hits:
        return []
    hits.sort(key=lambda h: (-h.brand.weight, -h.similarity))
    top, cur = hits[0], lists.reference_currency
    evidence = (
        f"{top.line.label} '{top.line.text}' names '{top.words}' ~ brand {top.brand.id} "
        f"'{top.brand.name}' (similarity {round(top.similarity)}, "
        f"right holder {top.brand.right_holder})"
    )
    if top.line.unit_value is not None:
        evidence += f"; {top.line.unit_value:.2f} {cur} per unit"
        if top.line.per_kg is not None:
            evidence += f", {top.line.per_kg:.2f} {cur} per kg"
    others = sorted({h.brand.id for h in hits} - {top.brand.id})
    if others:
        evidence += f"; also {', '.join(others[:MAX_OTHER_HITS_SHOWN])}"
    reasons = [_reason(lists.brand_reason, top.brand.weight, evidence, False)]
    # Counterfeit signal: the brand at a price its genuine goods never have.
    cheap = [
        h
        for h in hits
        if h.brand.min_unit_value is not None
        and h.line.unit_value is not None
        and h.line.unit_value < h.brand.min_unit_value
    ]
    if cheap:
        h = min(cheap, key=lambda h: h.line.unit_value / h.brand.min_unit_value)
        reasons.append(
            _reason(
                lists.price_reason,
                lists.price_reason.weight,
                f"{h.line.label}: {h.line.unit_value:.2f} {cur} per unit for {h.brand.id} "
                f"'{h.brand.name}', genuine from {h.brand.min_unit_value:g} {cur}",
                False,
            )
        )
    return reasons


def _trusted_seller(party: dict, lists: Lists) -> tuple[TrustedEntry, str] | None:
    party_id = party.get("party_id")
    if party_id:
        entry = lists.sellers_by_id.get(party_id.strip().upper())
        if entry is not None:
            return entry, f"party id {party_id}"
    if party.get("name"):
        country = (party.get("country") or "").upper()
        for entry in lists.sellers_by_name.get(lists.name_key(party["name"]), ()):
            if entry.country is None or entry.country == country:
                return entry, f"'{party['name']}'"
    return None


def _trust_reasons(record: dict, stage: str, lists: Lists) -> list[dict]:
    """Facilitation for trusted operators, in total never below the configured floor."""
    found: list[tuple[str, TrustedEntry, str]] = []
    carrier = record.get("carrier_id") or ""
    entry = lists.aeo_carriers.get(carrier.upper())
    if entry is not None:
        found.append(("aeo_carriers", entry, f"carrier {carrier}"))
    platform = record.get("platform") if stage == PRE_ARRIVAL else None
    if platform:
        entry = lists.platforms.get(lists.normaliser.fold(platform))
        if entry is not None:
            found.append(("accredited_platforms", entry, f"platform '{platform}'"))
    seller = record.get("seller" if stage == PRE_ARRIVAL else "shipper")
    if seller:
        hit = _trusted_seller(seller, lists)
        if hit is not None:
            role = "seller" if stage == PRE_ARRIVAL else "shipper"
            found.append(("trusted_sellers", hit[0], f"{role} {hit[1]}"))
    reasons = []
    total = 0.0
    for kind, entry, what in found:
        room = lists.trust_floor - total  # <= 0: how much lower the total may still go
        if room >= 0:
            break
        contribution = max(entry.weight, room)
        if contribution == 0:
            continue
        total += contribution
        evidence = f"{what} is listed as {entry.id}"
        if entry.reference:
            evidence += f" ({entry.reference})"
        if contribution > entry.weight:
            evidence += f"; trust capped at {lists.trust_floor:g} in total"
        reasons.append(
            _reason(lists.trust_reasons[kind], contribution, evidence, lists.trust_visible)
        )
    return reasons


def match_batch(records: Sequence[dict], stage: str, lists: Lists) -> list[list[dict]]:
    """Per record (decoded filing of ``stage``), the reasons its list matches give, largest
    contribution first; an empty list when nothing matches."""
    roles = PARTY_FIELDS[stage]
    out = []
    for record in records:
        reasons = []
        for role in roles:
            party = record.get(role)
            if party:
                reason = _party_reason(role, party, lists)
                if reason is not None:
                    reasons.append(reason)
        if lists.brands:
            reasons.extend(_brand_reasons(record, stage, lists))
        reasons.extend(_trust_reasons(record, stage, lists))
        if len(reasons) > 1:
            reasons.sort(key=lambda r: -r["contribution"])
        out.append(reasons)
    return out
