"""Keyword terms (pymem.terms): what a text's terms are, what a query sends, and the client's
check of what the database says a row holds."""

from __future__ import annotations

import os

from pymem.blind_index import TenantIndex
from pymem.terms import MAX_QUERY_TERMS, MAX_ROW_TERMS, claims_hold, query_terms, row_terms, scheme, terms, words

INDEX = TenantIndex(os.urandom(32), "a" * 64)


def test_words_are_normalised_and_joined_words_are_kept_whole_and_in_parts():
    assert words("Order ORD-58213 shipped, ＡＢＣ") == ["order", "ord-58213", "ord", "58213", "shipped", "abc"]
    assert words("mail ann@example.com v1.2.3") == ["mail", "ann@example.com", "ann", "example", "com",
                                                   "v1.2.3", "v1", "2", "3"]
    assert words("?! --") == []


def test_words_with_a_digit_are_not_stemmed_and_others_are():
    assert terms("running flights E4012s", "english") == {"run": 1, "flight": 1, "e4012s": 1}


def test_a_row_stores_each_distinct_terms_tag_once_sorted_and_no_count():
    stored = row_terms(INDEX, "seat seats seating ORD-1", "english")
    tags = [stored[i:i + 16] for i in range(0, len(stored), 16)]
    assert len(tags) == 4 and tags == sorted(tags)  # seat, ord-1, ord, 1


def test_a_query_sends_sorted_tags_of_at_most_64_terms_with_its_terms_in_the_same_order():
    tags, query = query_terms(INDEX, " ".join(f"w{i}x" for i in range(100)), "english")
    assert len(tags) == MAX_QUERY_TERMS and tags == sorted(tags)
    assert [INDEX.term_tag(scheme("english"), t) for t in query] == tags
    assert query_terms(INDEX, "?!", "english") == ([], [])


def test_the_client_check_catches_every_claim_the_text_does_not_back():
    query = ["flight", "ord-58213"]
    text = "Order ORD-58213 was on the flight"
    assert claims_hold(text, "english", query, None, None)  # not a keyword hit
    assert claims_hold(text, "english", query, 3.2, [1, 2])
    assert not claims_hold("the flight", "english", query, 3.2, [1, 2])  # does not hold ord-58213
    assert not claims_hold(text, "english", query, 3.2, None)  # a score without positions
    assert not claims_hold(text, "english", query, 3.2, [])
    assert not claims_hold(text, "english", query, None, [1])  # positions without a score
    assert not claims_hold(text, "english", query, 3.2, [2, 1])  # not increasing
    assert not claims_hold(text, "english", query, 3.2, [1, 1])
    assert not claims_hold(text, "english", query, 3.2, [0])  # out of range
    assert not claims_hold(text, "english", query, 3.2, [3])


def test_a_long_text_is_found_by_its_first_1024_distinct_terms_and_still_written():
    text = " ".join(f"w{i}x" for i in range(3000))
    stored = row_terms(INDEX, text, "english")
    first = {INDEX.term_tag(scheme("english"), f"w{i}x") for i in range(MAX_ROW_TERMS)}
    assert {stored[i:i + 16] for i in range(0, len(stored), 16)} == first


def test_a_tag_names_the_stemmer_release_so_an_upgrade_makes_other_tags_not_false_alarms():
    assert "pystemmer-" in scheme("english") and scheme("english") != scheme("german")
    assert INDEX.term_tag(scheme("english"), "run") != INDEX.term_tag("english/1/pystemmer-0.0.0", "run")
