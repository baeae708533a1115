-- pymem 0005: the tenant boundary and the audit trail, hardened after an attack run
-- with only the documented roles.
--
--   * Audit log v2 (pymem.audit_log; the 0001 table stays, read-only, as
--     pymem.audit_log_v1). Chains are serialised by a row lock on a per-tenant
--     head row (pymem.audit_chain_heads) that only the definer functions can take:
--     advisory-lock keys are readable by every login in pg_locks, so any login
--     could freeze a tenant. The key is (user_hash, chain_pos): no identity
--     column, so the design distributes by user_hash.
--   * Durable reads: a read needs a committed intent (pymem.read_intent) naming
--     the read's parameters. The intent is in the chain before any row is
--     returned, so ROLLBACK, a savepoint, a disconnect or a client crash cannot
--     erase the trace. The read itself appends a 'result' row naming the ids.
--   * One lock order everywhere: every API function that changes chunk rows
--     locks the caller's chain head first, then the rows, then key_stats.
--   * Search settings are pinned in search_chunks; the tuning knobs move into
--     pymem.tuning, which only the owner (a DBA) can change.
--   * Key ids must be registered (pymem.encryption_keys) before rows use them.
--   * AAD v2 binds doc_id and source; rows carry their aad_version.
--   * The app's writes are audited by the API functions (one row per call);
--     a row trigger audits anyone else's direct DML, one audit row per row.

-- Load pgvector's library so its hnsw.* settings are known in this session (the
-- owner may not name an unknown placeholder setting in a function's SET clause).
SELECT '[0]'::public.vector;

SET LOCAL ROLE pymem_owner;

-- ---------------------------------------------------------------------------
-- Tuning knobs: one row, changed only by the owner (a DBA with SET ROLE
-- pymem_owner, or a superuser). Callers' settings no longer steer anything.
-- ---------------------------------------------------------------------------
CREATE TABLE pymem.tuning (
    singleton               boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    exact_search_max_rows   integer NOT NULL DEFAULT 3000 CHECK (exact_search_max_rows BETWEEN 0 AND 100000000),
    key_seal_warn_threshold bigint  NOT NULL DEFAULT 1073741824 CHECK (key_seal_warn_threshold > 0),
    -- How long a committed read intent may be used for reads with its parameters.
    read_intent_ttl_s       integer NOT NULL DEFAULT 120 CHECK (read_intent_ttl_s BETWEEN 1 AND 86400)
);
-- Carry over values a DBA set with ALTER DATABASE ... SET pymem.* (they are in
-- effect in this migrating session) before those settings stop being read.
INSERT INTO pymem.tuning (exact_search_max_rows, key_seal_warn_threshold)
VALUES (coalesce(nullif(current_setting('pymem.exact_search_max_rows', true), '')::integer, 3000),
        coalesce(nullif(current_setting('pymem.key_seal_warn_threshold', true), '')::bigint, 1073741824));
ALTER TABLE pymem.tuning ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.tuning FORCE ROW LEVEL SECURITY;
CREATE POLICY tuning_owner ON pymem.tuning FOR ALL TO pymem_owner USING (true) WITH CHECK (true);
CREATE POLICY tuning_readers ON pymem.tuning FOR SELECT TO pymem_maintainer, pymem_auditor USING (true);
GRANT SELECT ON pymem.tuning TO pymem_maintainer, pymem_auditor;

-- ---------------------------------------------------------------------------
-- Registered encryption key ids. Rows may only name a registered id, so one
-- tenant can no longer plant a row under an id no key ring holds.
-- ---------------------------------------------------------------------------
CREATE TABLE pymem.encryption_keys (
    key_id        integer     PRIMARY KEY CHECK (key_id > 0),
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by text        NOT NULL DEFAULT session_user
);
ALTER TABLE pymem.encryption_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.encryption_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY encryption_keys_owner ON pymem.encryption_keys FOR ALL TO pymem_owner USING (true) WITH CHECK (true);
CREATE POLICY encryption_keys_readers ON pymem.encryption_keys FOR SELECT TO pymem_maintainer, pymem_auditor
    USING (true);
GRANT SELECT ON pymem.encryption_keys TO pymem_maintainer, pymem_auditor;
-- Key id 1 is the default MEMORY_ENCRYPTION_KEY_ID.
INSERT INTO pymem.encryption_keys (key_id) VALUES (1);

CREATE FUNCTION pymem.register_encryption_key(p_key_id integer) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_key_id IS NULL OR p_key_id < 1 THEN
        RAISE EXCEPTION 'register_encryption_key: key id must be a positive integer'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pymem.encryption_keys (key_id) VALUES (p_key_id) ON CONFLICT DO NOTHING;
    RETURN FOUND;
END
$$;

-- ---------------------------------------------------------------------------
-- Rows a key rotation could not open, so rotation can finish everything else.
-- ---------------------------------------------------------------------------
CREATE TABLE pymem.quarantined_chunks (
    user_hash char(64)    NOT NULL,
    chunk_id  uuid        NOT NULL,
    key_id    integer     NOT NULL,
    reason    text        NOT NULL CHECK (reason IN ('does not open', 'key not in the ring')),
    at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_hash, chunk_id)
);
ALTER TABLE pymem.quarantined_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.quarantined_chunks FORCE ROW LEVEL SECURITY;
CREATE POLICY quarantine_owner ON pymem.quarantined_chunks FOR ALL TO pymem_owner USING (true) WITH CHECK (true);

-- Record the current tenant's rows among p_ids (ids of other tenants are ignored
-- by RLS). Idempotent: a row already quarantined keeps its first record.
CREATE FUNCTION pymem.quarantine_chunks(p_ids uuid[], p_reason text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_count integer;
BEGIN
    INSERT INTO pymem.quarantined_chunks (user_hash, chunk_id, key_id, reason)
    SELECT c.user_hash, c.id, c.key_id, p_reason FROM pymem.memory_chunks c WHERE c.id = ANY (p_ids)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

CREATE FUNCTION pymem.quarantined()
    RETURNS TABLE (user_hash char(64), chunk_id uuid, key_id integer, reason text, at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT q.user_hash, q.chunk_id, q.key_id, q.reason, q.at FROM pymem.quarantined_chunks q
     ORDER BY q.user_hash, q.chunk_id;
END;

-- ---------------------------------------------------------------------------
-- Chunks: AAD version per row (v1 rows keep opening), registered key ids only.
-- ---------------------------------------------------------------------------
RESET ROLE;
-- As the migrating role: the owner is bound by RLS and would see no rows.
INSERT INTO pymem.encryption_keys (key_id)
SELECT DISTINCT c.key_id FROM pymem.memory_chunks c ON CONFLICT DO NOTHING;
SET LOCAL ROLE pymem_owner;

ALTER TABLE pymem.memory_chunks
    ADD COLUMN aad_version smallint NOT NULL DEFAULT 1 CHECK (aad_version IN (1, 2));
ALTER TABLE pymem.memory_chunks ALTER COLUMN aad_version DROP DEFAULT;
ALTER TABLE pymem.memory_chunks
    ADD CONSTRAINT memory_chunks_key_registered FOREIGN KEY (key_id) REFERENCES pymem.encryption_keys (key_id);

-- ---------------------------------------------------------------------------
-- Audit log v2.
-- ---------------------------------------------------------------------------
ALTER TABLE pymem.audit_log RENAME TO audit_log_v1;
ALTER FUNCTION pymem.audit_verify() RENAME TO audit_verify_v1;
-- Nothing writes to v1 any more: its chain trigger and writers go.
DROP TRIGGER memory_chunks_audit_insert ON pymem.memory_chunks;
DROP TRIGGER memory_chunks_audit_update ON pymem.memory_chunks;
DROP TRIGGER memory_chunks_audit_delete ON pymem.memory_chunks;
DROP FUNCTION pymem.audit_chunk_writes();
DROP FUNCTION pymem.audit_append(text, char, uuid[]);
DROP TRIGGER audit_log_chain ON pymem.audit_log_v1;
DROP FUNCTION pymem.audit_chain_link();

-- Calls made without a tenant context are chained under this hash (no HMAC
-- output is all zeros in practice).
CREATE FUNCTION pymem.no_tenant() RETURNS char(64)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN repeat('0', 64)::char(64);

CREATE TABLE pymem.audit_log (
    user_hash     char(64)    NOT NULL CHECK (user_hash ~ '^[0-9a-f]{64}$'),
    chain_pos     bigint      NOT NULL CHECK (chain_pos > 0),
    at            timestamptz NOT NULL,
    -- session_user: the login that really acted (inside the definer API
    -- current_user would always read pymem_owner).
    db_role       text        NOT NULL,
    operation     text        NOT NULL
        CHECK (operation IN ('insert', 'update', 'delete', 'truncate', 'search', 'get', 'export')),
    -- 'write' for changes; a read is an 'intent' (committed before any row is
    -- returned) and then a 'result' naming the ids it returned.
    phase         text        NOT NULL CHECK (phase IN ('write', 'intent', 'result')),
    ticket        uuid,
    params_digest bytea,
    chunk_ids     uuid[]      NOT NULL,
    row_count     integer     NOT NULL,
    txid          xid8        NOT NULL,
    prev_hash     bytea       NOT NULL,
    row_hash      bytea       NOT NULL,
    PRIMARY KEY (user_hash, chain_pos),
    CHECK ((phase = 'write') = (ticket IS NULL)),
    CHECK ((phase = 'intent') = (params_digest IS NOT NULL))
);
-- One intent per ticket and tenant; reads find it through this index.
CREATE UNIQUE INDEX audit_log_intent ON pymem.audit_log (user_hash, ticket) WHERE phase = 'intent';

ALTER TABLE pymem.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_owner_append ON pymem.audit_log FOR INSERT TO pymem_owner WITH CHECK (true);
CREATE POLICY audit_owner_read ON pymem.audit_log FOR SELECT TO pymem_owner USING (true);
CREATE POLICY audit_auditor_read ON pymem.audit_log FOR SELECT TO pymem_auditor USING (true);
GRANT SELECT ON pymem.audit_log TO pymem_auditor;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON pymem.audit_log
    FOR EACH ROW EXECUTE FUNCTION pymem.audit_reject_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON pymem.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION pymem.audit_reject_change();

-- The newest row of each chain. Writers of one chain queue on its row lock,
-- which only the definer functions below can take (nobody else may UPDATE or
-- lock this table); other chains never wait.
CREATE TABLE pymem.audit_chain_heads (
    user_hash char(64)    PRIMARY KEY CHECK (user_hash ~ '^[0-9a-f]{64}$'),
    chain_pos bigint      NOT NULL,
    row_hash  bytea       NOT NULL,
    at        timestamptz NOT NULL
);
ALTER TABLE pymem.audit_chain_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.audit_chain_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY heads_owner ON pymem.audit_chain_heads FOR ALL TO pymem_owner USING (true) WITH CHECK (true);
CREATE POLICY heads_auditor_read ON pymem.audit_chain_heads FOR SELECT TO pymem_auditor USING (true);
GRANT SELECT ON pymem.audit_chain_heads TO pymem_auditor;

RESET ROLE;
-- Each v2 chain continues its v1 chain: the first v2 row's prev_hash is the last
-- v1 row_hash, and positions go on. (As the migrating role, which reads v1 whole.)
INSERT INTO pymem.audit_chain_heads (user_hash, chain_pos, row_hash, at)
SELECT DISTINCT ON (coalesce(a.user_hash, pymem.no_tenant()))
       coalesce(a.user_hash, pymem.no_tenant()), a.chain_pos, a.row_hash, a.at
  FROM pymem.audit_log_v1 a
 ORDER BY coalesce(a.user_hash, pymem.no_tenant()), a.chain_pos DESC;
SET LOCAL ROLE pymem_owner;

-- The bytes a row's hash covers. Epoch microseconds, not timestamptz::text, so
-- the hash does not depend on the session's TimeZone or DateStyle.
CREATE FUNCTION pymem.audit_row_digest(
    p_prev_hash bytea, p_user_hash char(64), p_chain_pos bigint, p_at timestamptz, p_db_role text,
    p_operation text, p_phase text, p_ticket uuid, p_params_digest bytea, p_chunk_ids uuid[],
    p_row_count integer, p_txid xid8)
    RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(p_prev_hash || convert_to(concat_ws('|',
        'v2', p_user_hash, p_chain_pos, (extract(epoch FROM p_at) * 1000000)::bigint, p_db_role, p_operation,
        p_phase, coalesce(p_ticket::text, '-'), coalesce(encode(p_params_digest, 'hex'), '-'), p_chunk_ids::text,
        p_row_count, p_txid), 'UTF8'));

-- Lock a chain's head row until commit, creating it on first use.
-- READ COMMITTED (what pymem's client pins) waits and then sees the newest head.
-- Under REPEATABLE READ or SERIALIZABLE, a head moved by a transaction that
-- committed after this one's snapshot raises a serialization failure instead:
-- the caller retries, and the chain never forks (the primary key forbids it).
CREATE FUNCTION pymem.audit_lock_chain(p_user_hash char(64)) RETURNS pymem.audit_chain_heads
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_head pymem.audit_chain_heads;
BEGIN
    SELECT h.* INTO v_head FROM pymem.audit_chain_heads h WHERE h.user_hash = p_user_hash FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO pymem.audit_chain_heads (user_hash, chain_pos, row_hash, at)
        VALUES (p_user_hash, 0, '\x', '-infinity') ON CONFLICT DO NOTHING;
        SELECT h.* INTO STRICT v_head FROM pymem.audit_chain_heads h WHERE h.user_hash = p_user_hash FOR UPDATE;
    END IF;
    RETURN v_head;
END
$$;

-- Append one row to a chain; returns its position. Time never goes backwards
-- within a chain, so a chain is also ordered by time.
CREATE FUNCTION pymem.audit_append(p_user_hash char(64), p_operation text, p_phase text, p_ticket uuid,
                                   p_params_digest bytea, p_chunk_ids uuid[])
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_head pymem.audit_chain_heads := pymem.audit_lock_chain(p_user_hash);
    v_row  pymem.audit_log;
BEGIN
    v_row.user_hash := p_user_hash;
    v_row.chain_pos := v_head.chain_pos + 1;
    v_row.at := greatest(clock_timestamp(), v_head.at);
    v_row.db_role := session_user;
    v_row.operation := p_operation;
    v_row.phase := p_phase;
    v_row.ticket := p_ticket;
    v_row.params_digest := p_params_digest;
    v_row.chunk_ids := p_chunk_ids;
    v_row.row_count := cardinality(p_chunk_ids);
    v_row.txid := pg_current_xact_id();
    v_row.prev_hash := v_head.row_hash;
    v_row.row_hash := pymem.audit_row_digest(v_row.prev_hash, v_row.user_hash, v_row.chain_pos, v_row.at,
        v_row.db_role, v_row.operation, v_row.phase, v_row.ticket, v_row.params_digest, v_row.chunk_ids,
        v_row.row_count, v_row.txid);
    INSERT INTO pymem.audit_log VALUES (v_row.*);
    UPDATE pymem.audit_chain_heads h SET chain_pos = v_row.chain_pos, row_hash = v_row.row_hash, at = v_row.at
     WHERE h.user_hash = p_user_hash;
    RETURN v_row.chain_pos;
END
$$;

-- The chain an API call writes to: the caller's tenant, or the no-tenant chain.
CREATE FUNCTION pymem.audit_chain() RETURNS char(64)
    LANGUAGE sql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN coalesce(pymem.current_tenant(), pymem.no_tenant());

-- Direct DML by anyone but the owner (the API functions run as the owner and
-- audit each call themselves): one audit row per chunk row. Row-level, with no
-- transition tables, so it also works where the table is distributed.
CREATE FUNCTION pymem.audit_direct_write() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pymem.audit_append(pymem.no_tenant(), 'truncate', 'write', NULL, NULL, '{}');
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM pymem.audit_append(OLD.user_hash, lower(TG_OP), 'write', NULL, NULL, ARRAY[OLD.id]);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.user_hash <> OLD.user_hash) THEN
        PERFORM pymem.audit_append(NEW.user_hash, lower(TG_OP), 'write', NULL, NULL, ARRAY[NEW.id]);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER memory_chunks_audit_direct AFTER INSERT OR UPDATE OR DELETE ON pymem.memory_chunks
    FOR EACH ROW WHEN (current_user <> 'pymem_owner') EXECUTE FUNCTION pymem.audit_direct_write();
CREATE TRIGGER memory_chunks_audit_truncate BEFORE TRUNCATE ON pymem.memory_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION pymem.audit_direct_write();

-- ---------------------------------------------------------------------------
-- Durable reads: intent first (its own, committed transaction), then the read.
-- The digest functions are the one definition of "the same read parameters".
-- ---------------------------------------------------------------------------
CREATE FUNCTION pymem.search_digest(p_query public.vector, p_k integer) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(public.vector_send(p_query) || int4send(p_k));

CREATE FUNCTION pymem.get_digest(p_ids uuid[]) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(convert_to(coalesce(p_ids::text, '-'), 'UTF8'));

-- An export intent covers every page of the same export (same keys, same page
-- size), so one transaction can page through a tenant's rows.
CREATE FUNCTION pymem.export_digest(p_key_ids integer[], p_limit integer) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(convert_to(concat_ws('|', coalesce(p_key_ids::text, '*'), p_limit), 'UTF8'));

-- Record, in the caller's chain, that the caller is about to read with these
-- parameters. Commit it before reading: the read functions refuse an intent
-- that is not committed.
CREATE FUNCTION pymem.read_intent(p_ticket uuid, p_operation text, p_params_digest bytea) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_ticket IS NULL OR p_operation IS NULL OR p_operation NOT IN ('search', 'get', 'export')
       OR p_params_digest IS NULL OR octet_length(p_params_digest) <> 32 THEN
        RAISE EXCEPTION 'read_intent: needs a ticket, an operation (search, get, export) and a 32-byte digest'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.audit_append(pymem.audit_chain(), p_operation, 'intent', p_ticket, p_params_digest, '{}');
END
$$;

-- Check that p_ticket is a committed, unexpired intent of the caller's chain for
-- exactly this read. pg_xact_status() of the intent's top-level transaction is
-- 'in progress' when it was written in this transaction (savepoints included).
CREATE FUNCTION pymem.redeem_read_intent(p_ticket uuid, p_operation text, p_params_digest bytea) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_intent pymem.audit_log;
BEGIN
    SELECT a.* INTO v_intent FROM pymem.audit_log a
     WHERE a.user_hash = pymem.audit_chain() AND a.ticket = p_ticket AND a.phase = 'intent';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pymem: no read intent with this ticket for this tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'call pymem.read_intent in its own committed transaction first';
    END IF;
    IF v_intent.at < clock_timestamp() - make_interval(secs => (SELECT t.read_intent_ttl_s FROM pymem.tuning t)) THEN
        RAISE EXCEPTION 'pymem: the read intent has expired' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF pg_xact_status(v_intent.txid) IS DISTINCT FROM 'committed' THEN
        RAISE EXCEPTION 'pymem: the read intent must be committed before the read'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF v_intent.operation <> p_operation OR v_intent.params_digest <> p_params_digest THEN
        RAISE EXCEPTION 'pymem: the read does not match its intent'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- The API, v2. Old signatures go: they read without a durable trace.
-- ---------------------------------------------------------------------------
DROP FUNCTION pymem.search_chunks(public.vector, integer);
DROP FUNCTION pymem.get_chunk(uuid);
DROP FUNCTION pymem.export_chunks(integer[], uuid, integer);
DROP FUNCTION pymem.put_chunks(char, uuid[], text[], text[], bytea[], bytea[], bytea[], integer[], public.vector[]);
DROP FUNCTION pymem.rekey_chunks(uuid[], integer[], bytea[], bytea[], bytea[], integer);

-- The AAD version a client seals new rows with; older clients fail loudly.
CREATE FUNCTION pymem.check_aad_version(p_aad_version smallint) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_aad_version IS DISTINCT FROM 2 THEN
        RAISE EXCEPTION 'pymem: new rows must be sealed with AAD version 2' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE FUNCTION pymem.put_chunks(
    p_user_hash    char(64),
    p_ids          uuid[],
    p_doc_ids      text[],
    p_sources      text[],
    p_text_ciphers bytea[],
    p_meta_ciphers bytea[],
    p_emb_ciphers  bytea[],
    p_key_ids      integer[],
    p_embeddings   public.vector[],
    p_aad_version  smallint)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_n   integer := cardinality(p_ids);
    v_ids uuid[];
BEGIN
    IF v_n IS NULL OR v_n = 0 THEN
        RAISE EXCEPTION 'put_chunks: no chunks given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_doc_ids) <> v_n OR cardinality(p_sources) <> v_n OR cardinality(p_text_ciphers) <> v_n
       OR cardinality(p_meta_ciphers) <> v_n OR cardinality(p_emb_ciphers) <> v_n
       OR cardinality(p_key_ids) <> v_n OR cardinality(p_embeddings) <> v_n THEN
        RAISE EXCEPTION 'put_chunks: argument arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.check_aad_version(p_aad_version);
    -- Lock order: the caller's chain head, then rows, then key_stats (triggers).
    -- The caller's own chain, never p_user_hash's: RLS rejects a foreign tenant
    -- below, and a caller must not be able to lock another tenant's chain.
    PERFORM pymem.audit_lock_chain(pymem.audit_chain());
    WITH inserted AS (
        INSERT INTO pymem.memory_chunks
            (id, user_hash, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, embedding, aad_version)
        SELECT u.id, p_user_hash, u.doc_id, u.source, u.text_cipher, u.meta_cipher, u.emb_cipher, u.key_id,
               u.embedding, p_aad_version
          FROM unnest(p_ids, p_doc_ids, p_sources, p_text_ciphers, p_meta_ciphers, p_emb_ciphers, p_key_ids,
                      p_embeddings) AS u(id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, embedding)
        RETURNING id)
    SELECT coalesce(array_agg(i.id ORDER BY i.id), '{}') INTO v_ids FROM inserted i;
    PERFORM pymem.audit_append(pymem.audit_chain(), 'insert', 'write', NULL, NULL, v_ids);
    RETURN cardinality(v_ids);
END
$$;

-- Reads return emb_cipher and the plaintext embedding as well, so the client can
-- check that the searchable copy still matches its sealed shadow.
CREATE FUNCTION pymem.get_chunks(p_ticket uuid, p_ids uuid[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    IF cardinality(p_ids) IS NULL OR cardinality(p_ids) NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'get_chunks: give between 1 and 10000 ids' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.redeem_read_intent(p_ticket, 'get', pymem.get_digest(p_ids));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
               c.embedding
          FROM pymem.memory_chunks c
         WHERE c.id = ANY (p_ids)
         ORDER BY c.id
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(pymem.audit_chain(), 'get', 'result', p_ticket, NULL, v_ids);
END
$$;

-- Every setting that steers the search is pinned here, so no caller setting
-- (hnsw.*, enable_*, pymem.*, row_security) changes which rows it examines.
-- What still depends on other tenants is timing on the shared HNSW index; see
-- the README ("Timing on a shared index").
CREATE FUNCTION pymem.search_chunks(p_ticket uuid, p_query public.vector, p_k integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
    SET hnsw.iterative_scan = 'relaxed_order'
    SET hnsw.ef_search = '100'
    SET hnsw.max_scan_tuples = '20000'
    SET hnsw.scan_mem_multiplier = '1'
    SET enable_sort = off
    SET enable_seqscan = on
    SET enable_indexscan = on
    SET enable_bitmapscan = on
    SET enable_indexonlyscan = on
    SET max_parallel_workers_per_gather = 0
AS $$
DECLARE
    v_tenant    char(64) := pymem.current_tenant();
    v_exact_max integer := (SELECT t.exact_search_max_rows FROM pymem.tuning t);
    v_rows      bigint;
    v_ids       uuid[] := '{}';
BEGIN
    IF p_k IS NULL OR p_k NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'search_chunks: k must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.redeem_read_intent(p_ticket, 'search', pymem.search_digest(p_query, p_k));
    -- The tenant's live rows (key_stats, exact in the writers' transactions) pick
    -- the path: exact search for small tenants, the HNSW index for large ones.
    SELECT coalesce(sum(s.live_rows), 0) INTO v_rows FROM pymem.key_stats s WHERE s.user_hash = v_tenant;
    IF v_rows > v_exact_max THEN
        -- A tenant with a large share of all rows finds k matches among pgvector's
        -- default 40 candidates; 100 is for the rest. Local to this call.
        IF v_rows >= 0.1 * (SELECT greatest(c.reltuples, 1) FROM pg_catalog.pg_class c
                             WHERE c.oid = 'pymem.memory_chunks'::regclass) THEN
            PERFORM set_config('hnsw.ef_search', '40', true);
        END IF;
        FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, distance IN
            WITH hits AS MATERIALIZED (
                SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                       c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance
                  FROM pymem.memory_chunks c
                 ORDER BY c.embedding OPERATOR(public.<=>) p_query
                 LIMIT p_k)
            SELECT * FROM hits h ORDER BY h.distance  -- relaxed_order: re-sort the k hits
        LOOP
            v_ids := v_ids || id;
            RETURN NEXT;
        END LOOP;
    ELSIF v_rows > 0 THEN
        -- "+ 0": the ORDER BY no longer matches the HNSW operator, so the planner
        -- reads the tenant's rows through the btree and keeps the exact top k.
        FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, distance IN
            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
                   c.embedding, c.embedding OPERATOR(public.<=>) p_query
              FROM pymem.memory_chunks c
             WHERE c.user_hash = v_tenant
             ORDER BY (c.embedding OPERATOR(public.<=>) p_query) + 0
             LIMIT p_k
        LOOP
            v_ids := v_ids || id;
            RETURN NEXT;
        END LOOP;
    END IF;
    PERFORM pymem.audit_append(pymem.audit_chain(), 'search', 'result', p_ticket, NULL, v_ids);
END
$$;

-- The current tenant's chunks, sealed, in id order after p_after (keyset paging),
-- optionally only those under p_key_ids. For re-keying and compliance export.
CREATE FUNCTION pymem.export_chunks(p_ticket uuid, p_key_ids integer[], p_after uuid, p_limit integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'export_chunks: limit must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.redeem_read_intent(p_ticket, 'export', pymem.export_digest(p_key_ids, p_limit));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
               c.embedding
          FROM pymem.memory_chunks c
         WHERE (p_key_ids IS NULL OR c.key_id = ANY (p_key_ids))
           AND (p_after IS NULL OR c.id > p_after)
         ORDER BY c.id
         LIMIT p_limit
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(pymem.audit_chain(), 'export', 'result', p_ticket, NULL, v_ids);
END
$$;

-- Replace the current tenant's ciphertexts with re-sealed ones under p_new_key_id
-- (AAD v2). A row is only touched while it is still under the key it was read
-- with, so a re-run or a concurrent rotator never re-seals twice.
CREATE FUNCTION pymem.rekey_chunks(p_ids uuid[], p_read_key_ids integer[], p_text_ciphers bytea[],
                                   p_meta_ciphers bytea[], p_emb_ciphers bytea[], p_new_key_id integer,
                                   p_aad_version smallint)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[];
BEGIN
    PERFORM pymem.check_aad_version(p_aad_version);
    PERFORM pymem.audit_lock_chain(pymem.audit_chain());
    WITH changed AS (
        UPDATE pymem.memory_chunks c
           SET text_cipher = u.text_cipher, meta_cipher = u.meta_cipher, emb_cipher = u.emb_cipher,
               key_id = p_new_key_id, aad_version = p_aad_version
          FROM unnest(p_ids, p_read_key_ids, p_text_ciphers, p_meta_ciphers, p_emb_ciphers)
               AS u(id, read_key_id, text_cipher, meta_cipher, emb_cipher)
         WHERE c.id = u.id AND c.key_id = u.read_key_id
        RETURNING c.id)
    SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}') INTO v_ids FROM changed c;
    PERFORM pymem.audit_append(pymem.audit_chain(), 'update', 'write', NULL, NULL, v_ids);
    RETURN cardinality(v_ids);
END
$$;

CREATE OR REPLACE FUNCTION pymem.delete_document(p_doc_id text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[];
BEGIN
    PERFORM pymem.audit_lock_chain(pymem.audit_chain());
    WITH deleted AS (DELETE FROM pymem.memory_chunks c WHERE c.doc_id = p_doc_id RETURNING c.id)
    SELECT coalesce(array_agg(d.id ORDER BY d.id), '{}') INTO v_ids FROM deleted d;
    -- A delete that matched nothing (say, another tenant's doc id) is audited too.
    PERFORM pymem.audit_append(pymem.audit_chain(), 'delete', 'write', NULL, NULL, v_ids);
    RETURN cardinality(v_ids);
END
$$;

CREATE OR REPLACE FUNCTION pymem.erase_tenant() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[];
BEGIN
    PERFORM pymem.audit_lock_chain(pymem.audit_chain());
    -- RLS limits this to the current tenant; no context deletes nothing.
    WITH deleted AS (DELETE FROM pymem.memory_chunks c WHERE true RETURNING c.id)
    SELECT coalesce(array_agg(d.id ORDER BY d.id), '{}') INTO v_ids FROM deleted d;
    PERFORM pymem.audit_append(pymem.audit_chain(), 'delete', 'write', NULL, NULL, v_ids);
    RETURN cardinality(v_ids);
END
$$;

-- The seal-count warning threshold now comes from pymem.tuning.
CREATE OR REPLACE FUNCTION pymem.track_key_stats() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_warn bigint := (SELECT t.key_seal_warn_threshold FROM pymem.tuning t);
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

-- ---------------------------------------------------------------------------
-- Verification.
-- ---------------------------------------------------------------------------
-- The last v1 row of a chain (v1 chained calls without a tenant under NULL).
CREATE FUNCTION pymem.audit_v1_tail(p_user_hash char(64), OUT chain_pos bigint, OUT row_hash bytea)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_user_hash = pymem.no_tenant() THEN
        SELECT v.chain_pos, v.row_hash INTO chain_pos, row_hash FROM pymem.audit_log_v1 v
         WHERE v.user_hash IS NULL ORDER BY v.chain_pos DESC LIMIT 1;
    ELSE
        SELECT v.chain_pos, v.row_hash INTO chain_pos, row_hash FROM pymem.audit_log_v1 v
         WHERE v.user_hash = p_user_hash ORDER BY v.chain_pos DESC LIMIT 1;
    END IF;
END
$$;

-- v1 history is verified as before, under its own names.
ALTER FUNCTION pymem.audit_row_digest(bytea, bigint, timestamptz, text, char, text, uuid[], integer, xid8, bigint)
    RENAME TO audit_row_digest_v1;
CREATE OR REPLACE FUNCTION pymem.audit_verify_v1()
    RETURNS TABLE (user_hash char(64), seq bigint, chain_pos bigint, problem text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row       record;
    v_chain     char(64);
    v_first     boolean := true;
    v_expect    bigint;
    v_prev_hash bytea;
    v_broken    boolean;
BEGIN
    FOR v_row IN
        SELECT a.*, row_number() OVER (PARTITION BY a.user_hash ORDER BY a.seq) AS seq_rank
          FROM pymem.audit_log_v1 a
         ORDER BY a.user_hash NULLS FIRST, a.chain_pos
    LOOP
        IF v_first OR v_row.user_hash IS DISTINCT FROM v_chain THEN
            v_first := false;
            v_chain := v_row.user_hash;
            v_expect := 1;
            v_prev_hash := '\x';
            v_broken := false;
        END IF;
        CONTINUE WHEN v_broken;
        problem := CASE
            WHEN v_row.chain_pos <> v_expect THEN 'missing row(s) before this one (deleted)'
            WHEN v_row.seq_rank <> v_row.chain_pos THEN 'out of order (reordered)'
            WHEN v_row.prev_hash <> v_prev_hash THEN 'previous hash does not match (predecessor altered)'
            WHEN v_row.row_hash <> pymem.audit_row_digest_v1(v_row.prev_hash, v_row.seq, v_row.at, v_row.db_role,
                     v_row.user_hash, v_row.operation, v_row.chunk_ids, v_row.row_count, v_row.txid,
                     v_row.chain_pos) THEN 'row hash does not match (modified)'
        END;
        IF problem IS NOT NULL THEN
            user_hash := v_row.user_hash;
            seq := v_row.seq;
            chain_pos := v_row.chain_pos;
            v_broken := true;
            RETURN NEXT;
        END IF;
        v_expect := v_row.chain_pos + 1;
        v_prev_hash := v_row.row_hash;
    END LOOP;
END
$$;

-- Every broken segment of every chain (each check reports, then re-anchors on
-- the row, so a later break in the same chain is reported too); a head row that
-- disagrees with its chain's last row; and the v1 history's problems.
CREATE FUNCTION pymem.audit_verify()
    RETURNS TABLE (user_hash char(64), chain_pos bigint, problem text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row       pymem.audit_log;
    v_tail      record;
    v_chain     char(64);
    v_expect    bigint;
    v_prev_hash bytea;
    v_prev_at   timestamptz;
BEGIN
    FOR v_row IN SELECT a.* FROM pymem.audit_log a ORDER BY a.user_hash, a.chain_pos LOOP
        IF v_chain IS NULL OR v_row.user_hash <> v_chain THEN
            -- A chain that began in v1 links its first v2 row to v1's last.
            v_chain := v_row.user_hash;
            SELECT * INTO v_tail FROM pymem.audit_v1_tail(v_chain);
            v_expect := coalesce(v_tail.chain_pos, 0) + 1;
            v_prev_hash := coalesce(v_tail.row_hash, '\x');
            v_prev_at := '-infinity';
        END IF;
        user_hash := v_row.user_hash;
        chain_pos := v_row.chain_pos;
        IF v_row.chain_pos <> v_expect THEN
            problem := 'missing row(s) before this one (deleted)';
            RETURN NEXT;
        ELSIF v_row.prev_hash <> v_prev_hash THEN
            problem := 'previous hash does not match (a predecessor was altered, or rows were reordered)';
            RETURN NEXT;
        END IF;
        IF v_row.row_hash <> pymem.audit_row_digest(v_row.prev_hash, v_row.user_hash, v_row.chain_pos, v_row.at,
                v_row.db_role, v_row.operation, v_row.phase, v_row.ticket, v_row.params_digest, v_row.chunk_ids,
                v_row.row_count, v_row.txid) THEN
            problem := 'row hash does not match (modified)';
            RETURN NEXT;
        ELSIF v_row.at < v_prev_at THEN
            problem := 'earlier than its predecessor (reordered)';
            RETURN NEXT;
        END IF;
        v_expect := v_row.chain_pos + 1;
        v_prev_hash := v_row.row_hash;
        v_prev_at := v_row.at;
    END LOOP;
    -- The head row changes in the same transaction as each chain row: a head
    -- ahead of the log means rows were deleted from the end. Deleting a whole
    -- chain together with its head is caught against a signed checkpoint only
    -- (pymem audit-checkpoint / audit-verify --checkpoint).
    FOR user_hash, chain_pos, problem IN
        SELECT h.user_hash, h.chain_pos,
               CASE WHEN t.last_pos IS NULL THEN 'all rows of the chain are missing (head says ' || h.chain_pos || ')'
                    WHEN t.last_pos < h.chain_pos THEN 'rows missing at the end (head says ' || h.chain_pos || ')'
                    WHEN t.last_pos > h.chain_pos THEN 'rows beyond the head (head says ' || h.chain_pos || ')'
                    ELSE 'the last row''s hash differs from the head' END
          FROM pymem.audit_chain_heads h
          LEFT JOIN LATERAL (SELECT max(a.chain_pos) AS last_pos FROM pymem.audit_log a
                              WHERE a.user_hash = h.user_hash) t ON true
          LEFT JOIN pymem.audit_log l ON l.user_hash = h.user_hash AND l.chain_pos = h.chain_pos
          LEFT JOIN LATERAL pymem.audit_v1_tail(h.user_hash) v ON true
         WHERE NOT (t.last_pos IS NULL AND h.chain_pos = coalesce(v.chain_pos, 0))  -- no v2 rows yet
           AND (t.last_pos IS DISTINCT FROM h.chain_pos OR l.row_hash IS DISTINCT FROM h.row_hash)
    LOOP
        RETURN NEXT;
    END LOOP;
    RETURN QUERY SELECT coalesce(p.user_hash, pymem.no_tenant()), p.chain_pos, 'v1: ' || p.problem
                   FROM pymem.audit_verify_v1() p;
END
$$;

-- Chain heads for a signed checkpoint (pymem audit-checkpoint).
CREATE FUNCTION pymem.audit_heads() RETURNS TABLE (user_hash char(64), chain_pos bigint, row_hash bytea)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT h.user_hash, h.chain_pos, h.row_hash FROM pymem.audit_chain_heads h WHERE h.chain_pos > 0
     ORDER BY h.user_hash;
END;

-- The hash of the row at a checkpointed position (v2, else v1), or NULL.
CREATE FUNCTION pymem.audit_row_hash(p_user_hash char(64), p_chain_pos bigint) RETURNS bytea
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_hash bytea;
BEGIN
    SELECT a.row_hash INTO v_hash FROM pymem.audit_log a
     WHERE a.user_hash = p_user_hash AND a.chain_pos = p_chain_pos;
    IF NOT FOUND THEN
        SELECT v.row_hash INTO v_hash FROM pymem.audit_log_v1 v
         WHERE (v.user_hash = p_user_hash OR (v.user_hash IS NULL AND p_user_hash = pymem.no_tenant()))
           AND v.chain_pos = p_chain_pos;
    END IF;
    RETURN v_hash;
END
$$;

-- Every definer function touches tables under FORCE RLS; a caller's leftover
-- row_security = off would make each of them fail (sabotage on a pooled
-- connection). Pin it on all of them, including those of earlier revisions.
DO $$
DECLARE
    v_fn regprocedure;
BEGIN
    FOR v_fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
                 WHERE p.pronamespace = 'pymem'::regnamespace AND p.prosecdef LOOP
        EXECUTE format('ALTER FUNCTION %s SET row_security = on', v_fn);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- Grants.
-- ---------------------------------------------------------------------------
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pymem FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    pymem.search_digest(public.vector, integer),
    pymem.get_digest(uuid[]),
    pymem.export_digest(integer[], integer),
    pymem.read_intent(uuid, text, bytea),
    pymem.export_chunks(uuid, integer[], uuid, integer)
    TO pymem_app, pymem_maintainer;
GRANT EXECUTE ON FUNCTION
    pymem.put_chunks(char, uuid[], text[], text[], bytea[], bytea[], bytea[], integer[], public.vector[], smallint),
    pymem.get_chunks(uuid, uuid[]),
    pymem.search_chunks(uuid, public.vector, integer)
    TO pymem_app;
GRANT EXECUTE ON FUNCTION
    pymem.rekey_chunks(uuid[], integer[], bytea[], bytea[], bytea[], integer, smallint),
    pymem.register_encryption_key(integer),
    pymem.quarantine_chunks(uuid[], text)
    TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.quarantined() TO pymem_maintainer, pymem_auditor;
GRANT EXECUTE ON FUNCTION pymem.audit_verify(), pymem.audit_heads(),
    pymem.audit_row_hash(char, bigint) TO pymem_auditor;

RESET ROLE;
