"""Keyword terms: what hybrid search matches, computed in the app, stored as keyed tags.

A text's terms are its words after Unicode normalisation (NFKC), case folding and
Snowball stemming (PyStemmer) in the deployment's language (``PYMEM_TERM_LANGUAGE``,
``english`` by default). A word joined by ``-``, ``.``, ``/``, ``:``, ``@``, ``#`` or
``+`` (an id such as ``ORD-58213``, an address, a version) is a term whole and each of
its parts is one too, so ``ord-58213`` is found by ``ORD-58213`` and by ``58213``. Words
with a digit are not stemmed.

Each distinct term becomes a 16-byte tag: the first 16 bytes of HMAC(tenant index key,
``b"term\\x00"`` + the scheme (:func:`scheme`: the language and PyStemmer's release) +
``b"\\x00"`` + the term's UTF-8)
(:meth:`pymem.blind_index.TenantIndex.term_tag`): two tenants' tags of one word are
unrelated, and a word stemmed under another language is another tag. A row is stored
with one posting per distinct term, its tag (``pymem.memory_terms``): not how often the
term occurs, nor how long the row is. A query sends the tags of its first
:data:`MAX_QUERY_TERMS` distinct terms, sorted (their order says nothing).

What the database learns (docs/security.md, "Hybrid search"): which of a tenant's rows
share a term, how many distinct terms each row has, the tenant's document frequencies,
and which tags each hybrid query asks for. Not a term, and nothing across tenants.
Document frequencies are what frequency analysis works on: the most common tags of a
tenant writing English are likely its most common words. A deployment that cannot
accept that sets ``PYMEM_TERM_TAGS=false``: rows are then written without terms and a
hybrid search is refused.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Sequence

import Stemmer

from .blind_index import TenantIndex
from .config import ConfigurationError, Settings

MAX_QUERY_TERMS = 64  # term tags per hybrid query (pymem.check_terms)
MAX_ROW_TERMS = 1024  # distinct terms a row is found by (pymem.check_row_terms takes up to 4,096)
# What a tag's terms were made with: pymem's normalisation and tokenizing (the 1) and
# PyStemmer's release. Another release may stem a word otherwise, and a row's postings
# would then name terms its text no longer gives, which the client check would take for
# tampering: a tag of another scheme matches nothing instead, until the rows are
# re-indexed (pymem index-terms --all --rebuild).
SCHEME_VERSION = f"1/pystemmer-{Stemmer.version()}"

# Runs of word characters, joined by the characters ids and addresses use.
_WORD = re.compile(r"\w+(?:[-./:@#+]\w+)*")
_PARTS = re.compile(r"\w+")
_stemmers = threading.local()  # a PyStemmer Stemmer is not safe to share between threads


def term_language(settings: Settings) -> str | None:
    """The language rows' terms are stemmed in, or None when ``PYMEM_TERM_TAGS`` is false.

    Raises:
        ConfigurationError: ``PYMEM_TERM_LANGUAGE`` names no Snowball stemmer.
    """
    if not settings.term_tags:
        return None
    if settings.term_language not in Stemmer.algorithms():
        raise ConfigurationError("PYMEM_TERM_LANGUAGE must be one of " + ", ".join(sorted(Stemmer.algorithms())))
    return settings.term_language


def _stemmer(language: str) -> Stemmer.Stemmer:
    cache = getattr(_stemmers, "by_language", None)
    if cache is None:
        cache = _stemmers.by_language = {}
    if language not in cache:
        cache[language] = Stemmer.Stemmer(language)
    return cache[language]


def words(text: str) -> list[str]:
    """The words of ``text`` (normalised and case-folded; joined words whole and in parts), in order."""
    found = []
    for match in _WORD.finditer(unicodedata.normalize("NFKC", text).casefold()):
        word = match.group()
        found.append(word)
        if len(word) > len(_PARTS.match(word).group()):
            found.extend(_PARTS.findall(word))
    return found


def terms(text: str, language: str) -> Counter[str]:
    """The terms of ``text`` with their counts: its words, stemmed unless they hold a digit."""
    found = words(text)
    stem = _stemmer(language).stemWord
    return Counter(word if any(ch.isdigit() for ch in word) else stem(word) for word in found)


def scheme(language: str) -> str:
    """The scheme a tag names its terms by: the language and :data:`SCHEME_VERSION`."""
    return f"{language}/{SCHEME_VERSION}"


def row_terms(index: TenantIndex, text: str, language: str) -> bytes:
    """A row's postings for ``pymem.write_chunks_v2``: the tags of its first MAX_ROW_TERMS
    distinct terms (in the text's order), concatenated and sorted (their order says nothing).
    A longer text is found by those only: each posting costs the database about 300 bytes."""
    kept = list(terms(text, language))[:MAX_ROW_TERMS]  # a Counter keeps first-seen order
    named = scheme(language)
    return b"".join(sorted(index.term_tag(named, term) for term in kept))


def query_terms(index: TenantIndex, text: str, language: str) -> tuple[list[bytes], list[str]]:
    """A query's first MAX_QUERY_TERMS distinct terms: (their tags, sorted, as a hybrid search
    sends them; the terms, in the same order). Both empty: the query has no words."""
    first = list(terms(text, language))[:MAX_QUERY_TERMS]  # a Counter keeps first-seen order
    named = scheme(language)
    pairs = sorted((index.term_tag(named, term), term) for term in first)
    return [tag for tag, _ in pairs], [term for _, term in pairs]


def claims_hold(text: str, language: str, query: Sequence[str], score: float | None,
                positions: Sequence[int] | None) -> bool:
    """Whether an opened text holds every query term the database said it holds.

    ``query``: the terms whose tags the search sent, in their order; ``score`` and
    ``positions`` (1-based in ``query``, increasing): what the database returned for the
    row, both None when the keyword side did not rank it. The postings are not bound to
    the sealed text: a database that changed them could promote a row into a keyword
    result; checked on the plaintext, such a row is caught. (Postings removed, which only
    hide a row from the keyword side, are not; nor is the ranking among rows that do hold
    query terms, which the database's counts decide.)
    """
    if score is None and positions is None:
        return True
    if score is None or not positions or any(not 1 <= pos <= len(query) for pos in positions) \
            or any(a >= b for a, b in zip(positions, positions[1:])):
        return False
    held = terms(text, language)
    return all(query[pos - 1] in held for pos in positions)
