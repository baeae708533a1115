-- pymem 0004: keep chunk rows inline, and never try to compress ciphertext.
--
-- A sealed 384-d row is about 3.6 KB (the plaintext embedding plus its sealed
-- shadow copy), over the default 2 KB TOAST threshold. Postgres then tried to
-- compress the ciphertexts (random bytes never compress) and moved both the
-- sealed copy and the plaintext embedding out of line, so exact search had to
-- detoast every vector it compared. Measured on 4,000 rows: 13 MB of TOAST by
-- default, none after this; writes without the HNSW index went 8.7k -> 11.2k rows/s.
--   * ciphertext columns: EXTERNAL (out of line if a row is still too big, never
--     compressed);
--   * embedding: MAIN (kept inline; moved out only after everything else);
--   * toast_tuple_target 8160: rows up to a page stay whole (2 per page at 384-d).
-- Existing rows keep their layout until rewritten (VACUUM FULL, or re-keying).

SET LOCAL ROLE pymem_owner;

ALTER TABLE pymem.memory_chunks
    ALTER COLUMN text_cipher SET STORAGE EXTERNAL,
    ALTER COLUMN meta_cipher SET STORAGE EXTERNAL,
    ALTER COLUMN emb_cipher SET STORAGE EXTERNAL,
    ALTER COLUMN embedding SET STORAGE MAIN,
    SET (toast_tuple_target = 8160);

RESET ROLE;
