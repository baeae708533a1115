"""Keyword terms: what hybrid search matches, computed in the app, stored as keyed tags.

A text's terms are its words after Unicode normalisation (NFKC), case folding and
Snowball stemming (PyStemmer) in the deployment's language (``PYMEM_TERM_LANGUAGE``,
``english`` by default). A word joined by ``-``, ``.``, ``/``, ``:``, ``@``, ``#`` or
``+`` (an id such as ``ORD-58213``, an address, a version) is a term whole and each of
its parts is one too, so ``ord-58213`` is found by ``ORD-58213`` and by ``58213``. Words
with a digit are not stemmed.

Each distinct term becomes a 16-byte tag: the first 16 bytes of HMAC(tenant index key,
``b"term\\x00"`` + the language + ``b"\\x00"`` + the term's UTF-8)
(:meth:`pymem.blind_index.TenantIndex.term_tag`): two tenants' tags of one word are
unrelated, and a word stemmed under another language is another tag. A row is stored
with one posting per distinct term: its tag and how often it occurs (``pymem.memory_terms``);
a query sends the tags of its first :data:`MAX_QUERY_TERMS` distinct terms.

What the database learns (docs/security.md, "Hybrid search"): which of a tenant's rows
share a term, how often it occurs in each and how long each row is in terms, the
tenant's term frequencies, and which tags each hybrid query asks for. Not a term, and
nothing across tenants. Frequencies are what frequency analysis works on: the most
common tags of a tenant writing English are likely its most common words. A
deployment that cannot accept that sets ``PYMEM_TERM_TAGS=false``: rows are then
written without terms and a hybrid search is refused.
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
MAX_ROW_TERMS = 4096  # distinct terms per row (pymem.check_row_terms)
MAX_FREQ = 65535  # a term's count in one row is stored in 2 bytes

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


def row_terms(index: TenantIndex, text: str, language: str) -> bytes:
    """A row's postings for ``pymem.write_chunks_v2``: per distinct term its tag and count
    (2 bytes, big-endian, at most MAX_FREQ), sorted by tag (their order says nothing).

    Raises:
        ValueError: the text has more than MAX_ROW_TERMS distinct terms.
    """
    counts = terms(text, language)
    if len(counts) > MAX_ROW_TERMS:
        raise ValueError(f"a text has at most {MAX_ROW_TERMS} distinct words for hybrid search"
                         " (split it, or set PYMEM_TERM_TAGS=false)")
    return b"".join(sorted(index.term_tag(language, term) + min(count, MAX_FREQ).to_bytes(2, "big")
                           for term, count in counts.items()))


def query_terms(text: str, language: str) -> list[str]:
    """A query's first MAX_QUERY_TERMS distinct terms, in order (empty: no words); their tags
    are :meth:`TenantIndex.term_tag`'s."""
    return list(terms(text, language))[:MAX_QUERY_TERMS]  # a Counter keeps first-seen order


def claims_hold(text: str, language: str, query: Sequence[str], positions: Sequence[int] | None,
                freqs: Sequence[int] | None) -> bool:
    """Whether an opened text holds each query term the database said it holds, as often.

    ``query``: the terms whose tags the search sent; ``positions`` (1-based in ``query``)
    and ``freqs``: what the database returned for the row. The postings are not bound to
    the sealed text: a database that changed them could promote a row into a keyword
    result. Checked on the plaintext, such a row is caught. (Postings removed, which only
    hide a row from the keyword side, are not.)
    """
    if not positions:
        return True
    if freqs is None or len(freqs) != len(positions) or not all(1 <= pos <= len(query) for pos in positions):
        return False
    held = terms(text, language)
    return all(min(held[query[pos - 1]], MAX_FREQ) == freq for pos, freq in zip(positions, freqs))
