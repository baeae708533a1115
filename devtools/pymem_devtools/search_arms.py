"""The 64 bucket arms of ``pymem.search_rows_v2`` (``pymem/sql/functions/61_search_rows.sql``).

Each arm is the same statement with another bucket literal, so that each of the
64 partial HNSW graphs gets its own cached plan. The arm for bucket 0 is written
out in the file and is the template; the other 63 sit between two marker
comments and are written from it by :func:`with_generated_arms`. The file a
reviewer reads is the file that runs, and a test checks the 63 against the
template.
"""

from __future__ import annotations

import re

BUCKETS = 64
BEGIN_MARKER = "-- generated arms: begin"
END_MARKER = "-- generated arms: end"
# The template's two bucket literals: its WHEN label and its partial-index predicate.
_WHEN = re.compile(r"^(\s*)WHEN 0 THEN$", re.M)
_PREDICATE = "pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 0\n"


class ArmsError(ValueError):
    """The file does not have the shape the generator expects."""


def template_arm(text: str) -> str:
    """The arm for bucket 0: from its ``WHEN 0 THEN`` line up to the begin marker."""
    when = _WHEN.search(text)
    begin = text.find(BEGIN_MARKER)
    if when is None or begin < when.start():
        raise ArmsError("expected a 'WHEN 0 THEN' arm followed by the generated-arms markers")
    arm = text[when.start():text.rfind("\n", 0, begin) + 1]
    if arm.count(_PREDICATE) != 1:
        raise ArmsError(f"the bucket-0 arm must name its bucket once as {_PREDICATE.strip()!r}")
    return arm


def arm_for(template: str, bucket: int) -> str:
    """The template with ``bucket`` in place of 0 in both places."""
    arm = _WHEN.sub(lambda m: f"{m.group(1)}WHEN {bucket} THEN", template, count=1)
    return arm.replace(_PREDICATE, _PREDICATE.replace(" 0\n", f" {bucket}\n"))


def with_generated_arms(text: str) -> str:
    """``text`` with the arms for buckets 1-63 rewritten from the bucket-0 arm.

    Raises:
        ArmsError: no template arm, or the markers are missing or out of order.
    """
    template = template_arm(text)
    begin = text.find(BEGIN_MARKER)
    end = text.find(END_MARKER)
    if end < begin:
        raise ArmsError("the end marker must follow the begin marker")
    indent = text[text.rfind("\n", 0, begin) + 1:begin]
    head = text[:begin + len(BEGIN_MARKER)] + "\n"
    tail = indent + text[end:]
    return head + "".join(arm_for(template, b) for b in range(1, BUCKETS)) + tail
