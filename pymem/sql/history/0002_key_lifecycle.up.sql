-- pymem 0002: key lifecycle. Per-key counters, tenant-scoped export, re-keying.
--
-- Rotation never reads across tenants. The rotator asks which tenants still hold
-- rows under old keys (pymem.tenants_with_keys: hashes and counts only), then
-- works tenant by tenant under the ordinary RLS context, exactly like the app:
-- export_chunks reads that tenant's old-key rows, rekey_chunks writes them back
-- re-sealed. The policy stays the one boundary.

-- Operators who rotate keys: GRANT pymem_maintainer (and pymem_app) TO ops_login.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pymem_maintainer') THEN
        CREATE ROLE pymem_maintainer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA pymem TO pymem_maintainer;

SET LOCAL ROLE pymem_owner;

-- Live rows and seals per (key, tenant). Sharded by tenant on purpose: writers of
-- one tenant already queue on that tenant's audit-chain lock, so a per-tenant row
-- adds no contention, where one row per key would serialise every writer.
CREATE TABLE pymem.key_stats (
    key_id    integer  NOT NULL CHECK (key_id > 0),
    user_hash char(64) NOT NULL,
    live_rows bigint   NOT NULL DEFAULT 0,
    -- Each chunk write seals three fields (text, meta, emb) under its key.
    seals     bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, user_hash)
);
ALTER TABLE pymem.key_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.key_stats FORCE ROW LEVEL SECURITY;
-- Counts only, no ciphertext; nobody but the owner's definer functions touches it.
CREATE POLICY key_stats_owner ON pymem.key_stats FOR ALL TO pymem_owner USING (true) WITH CHECK (true);

CREATE FUNCTION pymem.track_key_stats() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_warn bigint := coalesce(nullif(current_setting('pymem.key_seal_warn_threshold', true), '')::bigint,
                              1073741824);  -- 2^30: a quarter of AES-GCM's 2^32 random-nonce budget
    v_key  record;
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE pymem.key_stats s SET live_rows = s.live_rows - o.n
          FROM (SELECT key_id, user_hash, count(*) AS n FROM old_rows GROUP BY 1, 2) o
         WHERE s.key_id = o.key_id AND s.user_hash = o.user_hash;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO pymem.key_stats AS s (key_id, user_hash, live_rows, seals)
        SELECT key_id, user_hash, count(*), 3 * count(*) FROM new_rows GROUP BY 1, 2
        ON CONFLICT (key_id, user_hash)
        DO UPDATE SET live_rows = s.live_rows + excluded.live_rows, seals = s.seals + excluded.seals;
        FOR v_key IN
            SELECT s.key_id, sum(s.seals) AS seals FROM pymem.key_stats s
             WHERE s.key_id IN (SELECT DISTINCT key_id FROM new_rows) GROUP BY s.key_id
        LOOP
            IF v_key.seals >= v_warn THEN
                RAISE WARNING 'pymem: key id % has sealed % fields (warning threshold %): rotate it',
                    v_key.key_id, v_key.seals, v_warn
                    USING HINT = 'pymem rotate-key re-seals rows under the active key';
            END IF;
        END LOOP;
    END IF;
    RETURN NULL;
END
$$;

-- Named after the audit triggers on purpose: same-event triggers fire in name
-- order, so every writer takes the audit-chain lock before the key_stats row lock.
CREATE TRIGGER memory_chunks_key_stats_insert AFTER INSERT ON pymem.memory_chunks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pymem.track_key_stats();
CREATE TRIGGER memory_chunks_key_stats_update AFTER UPDATE ON pymem.memory_chunks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pymem.track_key_stats();
CREATE TRIGGER memory_chunks_key_stats_delete AFTER DELETE ON pymem.memory_chunks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pymem.track_key_stats();

-- Search routes by a tenant's live rows (0003), so per-tenant lookups need an index.
CREATE INDEX key_stats_tenant ON pymem.key_stats (user_hash);

-- TRUNCATE fires no row or transition-table triggers: zero the live counts so they
-- never claim rows that are gone. Seal counts stay (they track each key's nonce budget).
CREATE FUNCTION pymem.reset_live_counts() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE pymem.key_stats SET live_rows = 0 WHERE live_rows <> 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER memory_chunks_key_stats_truncate AFTER TRUNCATE ON pymem.memory_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION pymem.reset_live_counts();

-- Per key: live rows, seals so far, tenants holding rows. Aggregates only.
CREATE FUNCTION pymem.key_usage()
    RETURNS TABLE (key_id integer, live_rows bigint, seals bigint, tenants bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.key_id, sum(s.live_rows)::bigint, sum(s.seals)::bigint, count(*) FILTER (WHERE s.live_rows > 0)
      FROM pymem.key_stats s GROUP BY s.key_id ORDER BY s.key_id;
END;

-- Which tenants still hold rows under any of these keys (hashes and counts, no data).
CREATE FUNCTION pymem.tenants_with_keys(p_key_ids integer[])
    RETURNS TABLE (user_hash char(64), live_rows bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.user_hash, sum(s.live_rows)::bigint FROM pymem.key_stats s
     WHERE s.key_id = ANY (p_key_ids) AND s.live_rows > 0
     GROUP BY s.user_hash ORDER BY s.user_hash;
END;

-- The current tenant's chunks, sealed, in id order after p_after (keyset paging),
-- optionally only those under p_key_ids. For re-keying and compliance export.
CREATE FUNCTION pymem.export_chunks(p_key_ids integer[], p_after uuid, p_limit integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, embedding public.vector)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'export_chunks: limit must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, embedding IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.embedding
          FROM pymem.memory_chunks c
         WHERE (p_key_ids IS NULL OR c.key_id = ANY (p_key_ids))
           AND (p_after IS NULL OR c.id > p_after)
         ORDER BY c.id
         LIMIT p_limit
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append('get', pymem.current_tenant(), v_ids);
END
$$;

-- Replace the current tenant's ciphertexts with re-sealed ones under p_new_key_id.
-- A row is only touched while it is still under the key it was read with, so a
-- re-run, or a concurrent rotator, never re-seals twice. Returns rows changed.
CREATE FUNCTION pymem.rekey_chunks(p_ids uuid[], p_read_key_ids integer[], p_text_ciphers bytea[],
                                   p_meta_ciphers bytea[], p_emb_ciphers bytea[], p_new_key_id integer)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE pymem.memory_chunks c
       SET text_cipher = u.text_cipher, meta_cipher = u.meta_cipher, emb_cipher = u.emb_cipher,
           key_id = p_new_key_id
      FROM unnest(p_ids, p_read_key_ids, p_text_ciphers, p_meta_ciphers, p_emb_ciphers)
           AS u(id, read_key_id, text_cipher, meta_cipher, emb_cipher)
     WHERE c.id = u.id AND c.key_id = u.read_key_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

REVOKE ALL ON FUNCTION pymem.track_key_stats(), pymem.reset_live_counts(), pymem.key_usage(), pymem.tenants_with_keys(integer[]),
    pymem.export_chunks(integer[], uuid, integer),
    pymem.rekey_chunks(uuid[], integer[], bytea[], bytea[], bytea[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pymem.export_chunks(integer[], uuid, integer) TO pymem_app, pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.key_usage() TO pymem_maintainer, pymem_auditor;
GRANT EXECUTE ON FUNCTION pymem.tenants_with_keys(integer[]),
    pymem.rekey_chunks(uuid[], integer[], bytea[], bytea[], bytea[], integer) TO pymem_maintainer;
-- Setting a tenant context needs nothing; embedding_dim is how clients learn the dimension.
GRANT EXECUTE ON FUNCTION pymem.embedding_dim() TO pymem_maintainer;

RESET ROLE;

-- Backfill the counters from existing rows. Run as the migrating role (a
-- superuser reads every tenant's rows); the owner is bound by RLS and would see none.
INSERT INTO pymem.key_stats (key_id, user_hash, live_rows, seals)
SELECT c.key_id, c.user_hash, count(*), 3 * count(*) FROM pymem.memory_chunks c GROUP BY 1, 2;
