-- pymem 0004: keep what search reads inline; never try to compress ciphertext.
--
-- A sealed 384-d row is about 3.6 KB (the plaintext embedding plus its sealed
-- shadow copy), over the default 2 KB TOAST threshold. Postgres then tried to
-- compress the ciphertexts (random bytes never compress) and moved both the
-- sealed copy and the plaintext embedding out of line, so exact search had to
-- detoast every vector it compared (4,000 rows: 13 MB of TOAST).
-- Keeping whole rows inline fixed that but doubled the heap, and exact search
-- over a large tenant got slower from cache misses. So:
--   * ciphertext columns: EXTERNAL, out of line when needed, never compressed;
--   * embedding: MAIN, the last thing ever moved out;
--   * toast_tuple_target: the embedding plus ~1 KB of everything else. The
--     sealed shadow copy (read only for compliance export) is the first thing
--     moved out; short texts stay inline for search results.
-- Existing rows keep their layout until rewritten (VACUUM FULL, or re-keying).

SET LOCAL ROLE pymem_owner;

ALTER TABLE pymem.memory_chunks
    ALTER COLUMN text_cipher SET STORAGE EXTERNAL,
    ALTER COLUMN meta_cipher SET STORAGE EXTERNAL,
    ALTER COLUMN emb_cipher SET STORAGE EXTERNAL,
    ALTER COLUMN embedding SET STORAGE MAIN;

DO $$
BEGIN
    -- 4 bytes per dimension + 8 of header, plus 1 KB for ids, labels, text and
    -- metadata ciphertext; within the range Postgres accepts (128..8160).
    EXECUTE format('ALTER TABLE pymem.memory_chunks SET (toast_tuple_target = %s)',
                   least(8160, greatest(2032, 4 * pymem.embedding_dim() + 8 + 1024)));
END
$$;

RESET ROLE;
