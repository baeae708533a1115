-- Revision 0023: the searchable embeddings at half precision (pgvector's halfvec), when the
-- migration is asked for it (PYMEM_EMBEDDING_TYPE=halfvec, setting pymem.embedding_type):
-- 2 bytes a dimension instead of 4 in the table and the graphs, and up to 4,000 dimensions
-- (HNSW indexes vector up to 2,000). The sealed copy, emb_cipher, stays float32; reads check
-- the searchable copy against it rounded as halfvec rounds. Without the setting (vector),
-- nothing changes. A halfvec schema wider than 2,000 dimensions was created by the earlier
-- revisions at 2,000 (pymem.migrations.step_dim), on an empty table: it gets its own here.
SET LOCAL ROLE pymem_owner;
SET LOCAL citus.multi_shard_modify_mode = 'sequential';  -- see revision 0021
DO $do$
DECLARE
    v_type  text := coalesce(nullif(current_setting('pymem.embedding_type', true), ''), 'vector');
    v_dim   integer := current_setting('pymem.embedding_dim')::integer;
    v_index text;
BEGIN
    IF v_type NOT IN ('vector', 'halfvec') THEN
        RAISE EXCEPTION 'pymem.embedding_type must be vector or halfvec, got %', v_type;
    END IF;
    IF v_type = 'vector' THEN
        RETURN;
    END IF;
    IF v_dim NOT BETWEEN 1 AND 4000 THEN
        RAISE EXCEPTION 'pymem.embedding_dim must be between 1 and 4000 for halfvec, got %', v_dim;
    END IF;
    -- Every HNSW graph is built anew with halfvec's operator class: the 64 bucket graphs here,
    -- solo graphs by the next `pymem solo-graphs`.
    FOR v_index IN
        SELECT c.relname FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
          JOIN pg_catalog.pg_am a ON a.oid = c.relam
         WHERE i.indrelid = 'pymem.memory_chunks'::pg_catalog.regclass AND a.amname = 'hnsw'
    LOOP
        EXECUTE pg_catalog.format('DROP INDEX pymem.%I', v_index);
    END LOOP;
    EXECUTE pg_catalog.format('ALTER TABLE pymem.memory_chunks ALTER COLUMN embedding TYPE public.halfvec(%s)'
                              ' USING embedding::public.halfvec(%s)', v_dim, v_dim);
    FOR v_bucket IN 0..63 LOOP
        EXECUTE pg_catalog.format('CREATE INDEX %I ON pymem.memory_chunks'
                                  ' USING hnsw (embedding public.halfvec_cosine_ops)'
                                  ' WHERE pymem.search_bucket(user_hash) OPERATOR(pg_catalog.=) %s',
                                  'memory_chunks_embedding_hnsw_' || v_bucket, v_bucket);
    END LOOP;
END
$do$;
RESET ROLE;
