"""Back-filling keyword terms: rows written without them (before revision 0021, or with
``PYMEM_TERM_TAGS=false``) are found by vector search only until they get theirs.

:func:`index_memory_terms` pages through a tenant's rows (each page an audited export),
opens their text, and sends each row's terms to ``pymem.index_terms``, which gives them
to rows that have none and whose text is still the one read (a row re-written meanwhile
keeps its own), audited in the tenant's chain as ``index_terms``. ``rebuild`` gives every
row its terms anew: a PyStemmer upgrade or another ``PYMEM_TERM_LANGUAGE`` makes other tags
(:func:`pymem.terms.scheme`), which the rows' postings do not match until then. Re-running it is safe: rows that have terms are
passed over. ``pymem index-terms`` runs it for one tenant or for every tenant.
"""

from __future__ import annotations

import hashlib

from .chunks import open_row
from .config import get_settings
from .connections import borrow
from .extras import progress_bar
from .reads import durable_read_with_keys
from .repository import EXPORT_SQL, keys_of_rows
from .security import hmac_user, keyring
from .tenant import check_user_hash, tenant_transaction
from .terms import row_terms, term_language

PAGE_ROWS = 500
_INDEX_SQL = ("SELECT pymem.index_terms(%s::pg_catalog.bpchar, %b::pg_catalog.uuid[], %b::pg_catalog.bytea[],"
              " %b::pg_catalog.bytea[], %s::pg_catalog.bool)")


async def index_memory_terms(conn, user_id: str, *, rebuild: bool = False, progress: bool = False) -> int:
    """Give the tenant's rows that have no keyword terms theirs; return how many got them.

    Args:
        conn: a connection or pool of a role that has ``pymem_app``.
        user_id: the tenant's application user id.
        rebuild: give every row its terms anew: after a PyStemmer upgrade or a change of
            ``PYMEM_TERM_LANGUAGE``, whose tags the rows' postings no longer match.
        progress: show a progress bar (the ``progress`` extra).

    Raises:
        ValueError: ``PYMEM_TERM_TAGS`` is false.
        InvalidTag: a stored row does not open (nothing of its page is written).
    """
    return await index_terms_of(conn, hmac_user(user_id), rebuild=rebuild, progress=progress)


async def index_terms_of(conn, user_hash: str, *, rebuild: bool = False, progress: bool = False) -> int:
    """:func:`index_memory_terms` by the tenant's hash (``pymem index-terms`` over every tenant)."""
    language = term_language(get_settings())
    if language is None:
        raise ValueError("back-filling keyword terms needs PYMEM_TERM_TAGS true")
    check_user_hash(user_hash)
    index = keyring().tenant_index(user_hash)
    indexed, after = 0, None
    bar = progress_bar(None, enabled=progress, unit="chunk", desc="indexing terms")
    async with borrow(conn) as conn:
        while True:
            # Unexpired rows only: an expired row is never found again, so it needs no terms.
            rows, live = await durable_read_with_keys(conn, user_hash, "export_v3", (None, PAGE_ROWS, [], "live"),
                                                      EXPORT_SQL, (None, after, PAGE_ROWS, [], "live"))
            if not rows:
                break
            keys = await keys_of_rows(conn, user_hash, rows, live)
            terms = [row_terms(index, open_row(user_hash, row, keys).text, language) for row in rows]
            async with tenant_transaction(conn, user_hash):
                cursor = await conn.execute(_INDEX_SQL, (
                    user_hash, [row[0] for row in rows], [hashlib.sha256(row[3]).digest() for row in rows], terms,
                    rebuild))
                indexed += (await cursor.fetchone())[0]
            bar.update(len(rows))
            if len(rows) < PAGE_ROWS:
                break
            after = rows[-1][0]
    bar.close()
    return indexed
