-- Undo 0023: a halfvec schema goes back to vector, its graphs rebuilt with vector's operator
-- class; one wider than 2,000 dimensions cannot (HNSW does not index such vectors), and the
-- downgrade is refused. The bundle of 0022 then puts back the functions as they were.
SET LOCAL ROLE pymem_owner;
SET LOCAL citus.multi_shard_modify_mode = 'sequential';  -- see revision 0021
DROP FUNCTION pymem.embedding_type();
DO $do$
DECLARE
    v_dim   integer;
    v_index text;
BEGIN
    SELECT a.atttypmod INTO v_dim FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = 'pymem.memory_chunks'::pg_catalog.regclass AND a.attname = 'embedding'
       AND a.atttypid = 'public.halfvec'::pg_catalog.regtype;
    IF v_dim IS NULL THEN
        RETURN;  -- vector: nothing was changed
    END IF;
    IF v_dim > 2000 THEN
        RAISE EXCEPTION 'a halfvec schema of % dimensions cannot go below revision 0023: HNSW indexes vector of at '
                        'most 2000', v_dim;
    END IF;
    FOR v_index IN
        SELECT c.relname FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
          JOIN pg_catalog.pg_am a ON a.oid = c.relam
         WHERE i.indrelid = 'pymem.memory_chunks'::pg_catalog.regclass AND a.amname = 'hnsw'
    LOOP
        EXECUTE pg_catalog.format('DROP INDEX pymem.%I', v_index);
    END LOOP;
    EXECUTE pg_catalog.format('ALTER TABLE pymem.memory_chunks ALTER COLUMN embedding TYPE public.vector(%s)'
                              ' USING embedding::public.vector(%s)', v_dim, v_dim);
    FOR v_bucket IN 0..63 LOOP
        EXECUTE pg_catalog.format('CREATE INDEX %I ON pymem.memory_chunks'
                                  ' USING hnsw (embedding public.vector_cosine_ops)'
                                  ' WHERE pymem.search_bucket(user_hash) OPERATOR(pg_catalog.=) %s',
                                  'memory_chunks_embedding_hnsw_' || v_bucket, v_bucket);
    END LOOP;
END
$do$;
RESET ROLE;
