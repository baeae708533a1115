-- The audit log: one append-only hash chain per tenant (pymem.audit_log), its
-- head row (pymem.audit_chain_heads), and the functions that write and verify it.
--
-- Writers of one chain are serialised by a row lock on the chain's head row,
-- which only these definer functions can take; advisory-lock keys would be
-- readable by every login in pg_locks, so any login could freeze a tenant.
-- The chain key is (user_hash, chain_pos), with no identity column, so the log
-- distributes by tenant on Citus.
--
-- pymem.audit_log_v1 is the log of the first schema, kept read-only: each v2
-- chain continues its v1 chain, and audit_verify checks both.

-- The bytes a row's hash covers. Epoch microseconds, not timestamptz::text, so
-- the hash does not depend on the session's TimeZone or DateStyle.
CREATE OR REPLACE FUNCTION pymem.audit_row_digest(
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
COMMENT ON FUNCTION pymem.audit_row_digest(bytea, char, bigint, timestamptz, text, text, text, uuid, bytea,
                                           uuid[], integer, xid8) IS
    'sha256(prev_hash || ''v2|user_hash|chain_pos|epoch_us|db_role|operation|phase|ticket|params_digest_hex|'
    'chunk_ids|row_count|txid''): the row hash of pymem.audit_log.';

-- The row hash of pymem.audit_log_v1, whose rows carried a global seq.
CREATE OR REPLACE FUNCTION pymem.audit_row_digest_v1(
    p_prev_hash bytea, p_seq bigint, p_at timestamptz, p_db_role text, p_user_hash char(64),
    p_operation text, p_chunk_ids uuid[], p_row_count integer, p_txid xid8, p_chain_pos bigint)
    RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(p_prev_hash || convert_to(concat_ws('|',
        p_seq, (extract(epoch FROM p_at) * 1000000)::bigint, p_db_role, coalesce(p_user_hash, '-'),
        p_operation, p_chunk_ids::text, p_row_count, p_txid, p_chain_pos), 'UTF8'));
COMMENT ON FUNCTION pymem.audit_row_digest_v1(bytea, bigint, timestamptz, text, char, text, uuid[], integer,
                                              xid8, bigint) IS
    'The row hash of the read-only pymem.audit_log_v1.';

-- Even the owner cannot rewrite history; only a superuser disabling the
-- trigger can, and audit_verify() then reports it. The live log's row trigger
-- passes an argument (revision 0024): there, a DELETE of a row before its
-- chain's anchor goes through (pymem.audit_retire, which records the anchor).
CREATE OR REPLACE FUNCTION pymem.audit_reject_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_NARGS = 1 AND TG_ARGV[0] = 'retired rows may go'
       AND OLD.chain_pos < (SELECT a.chain_pos FROM pymem.audit_anchors a WHERE a.user_hash = OLD.user_hash) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'pymem.audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
COMMENT ON FUNCTION pymem.audit_reject_change() IS
    'Trigger: refuses UPDATE, DELETE and TRUNCATE on the audit logs, whoever runs them; on the live log '
    '(argument ''retired rows may go'') a DELETE of a row before its chain''s anchor passes.';

-- Lock a chain's head row until commit, creating it on first use.
-- READ COMMITTED (what pymem's client pins) waits and then sees the newest head.
-- Under REPEATABLE READ or SERIALIZABLE, a head moved by a transaction that
-- committed after this one's snapshot raises a serialization failure instead:
-- the caller retries, and the chain never forks (the primary key forbids it).
CREATE OR REPLACE FUNCTION pymem.audit_lock_chain(p_user_hash char(64)) RETURNS pymem.audit_chain_heads
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
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
COMMENT ON FUNCTION pymem.audit_lock_chain(char) IS
    'Locks a tenant''s chain head until commit (creating it on first use) and returns it. '
    'Every writer takes it first: the one lock order is chain head, rows, key_stats.';

-- Time never goes backwards within a chain, so a chain is also ordered by time.
-- The row is written column by column: Citus routes a statement by a
-- distribution value it can read off the statement, and v_row.* would hide it.
CREATE OR REPLACE FUNCTION pymem.audit_append(p_user_hash char(64), p_operation text, p_phase text,
                                              p_ticket uuid, p_params_digest bytea, p_chunk_ids uuid[])
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_head pymem.audit_chain_heads := pymem.audit_lock_chain(p_user_hash);
    v_row  pymem.audit_log;
BEGIN
    v_row.chain_pos := v_head.chain_pos + 1;
    v_row.at := greatest(clock_timestamp(), v_head.at);
    v_row.db_role := session_user;
    v_row.txid := pg_current_xact_id();
    v_row.row_hash := pymem.audit_row_digest(v_head.row_hash, p_user_hash, v_row.chain_pos, v_row.at,
        v_row.db_role, p_operation, p_phase, p_ticket, p_params_digest, p_chunk_ids,
        cardinality(p_chunk_ids), v_row.txid);
    INSERT INTO pymem.audit_log (user_hash, chain_pos, at, db_role, operation, phase, ticket, params_digest,
                                 chunk_ids, row_count, txid, prev_hash, row_hash)
    VALUES (p_user_hash, v_row.chain_pos, v_row.at, v_row.db_role, p_operation, p_phase, p_ticket,
            p_params_digest, p_chunk_ids, cardinality(p_chunk_ids), v_row.txid, v_head.row_hash, v_row.row_hash);
    UPDATE pymem.audit_chain_heads h SET chain_pos = v_row.chain_pos, row_hash = v_row.row_hash, at = v_row.at
     WHERE h.user_hash = p_user_hash;
    RETURN v_row.chain_pos;
END
$$;
COMMENT ON FUNCTION pymem.audit_append(char, text, text, uuid, bytea, uuid[]) IS
    'Appends one row to a tenant''s audit chain and moves its head; returns the row''s chain position.';

-- Direct DML by anyone but the owner (the API functions run as the owner and
-- audit each call themselves): one audit row per chunk row; a row moved to
-- another tenant is a delete in its old chain. Row-level, with no
-- transition tables, so it also works where the table is distributed.
CREATE OR REPLACE FUNCTION pymem.audit_direct_write() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    -- No key holder wrote or deleted the row: its write record is 32 zero bytes, and
    -- a verifier holding the keys reports it (revision 0016).
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.user_hash <> OLD.user_hash) THEN
        PERFORM pymem.audit_append(OLD.user_hash, 'delete', 'write', NULL, pymem.no_write_records(1), ARRAY[OLD.id]);
    END IF;
    IF TG_OP = 'INSERT' OR TG_OP = 'UPDATE' THEN
        PERFORM pymem.audit_append(NEW.user_hash, lower(TG_OP), 'write', NULL, pymem.no_write_records(1),
                                   ARRAY[NEW.id]);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION pymem.audit_direct_write() IS
    'Trigger: audits each chunk row written by anyone but pymem_owner (a superuser''s direct DML, say).';

-- Retention (revision 0024): the chain now starts at (p_chain_pos, p_row_hash); the rows
-- before it are deleted, after the caller archived them (pymem audit-archive, which signs
-- the anchor: p_signature, checked by the verifier, which the database cannot do). The
-- anchor only moves forward, to a row that is there with that hash; the retirement is
-- appended to the chain, naming the anchor's hash. Under the chain's lock, so no write
-- of the tenant interleaves; a call that changes nothing returns before taking it (a
-- login could otherwise hold any tenant's chain with it). One error for every refusal:
-- it shows nothing of where a chain starts or ends.
CREATE OR REPLACE FUNCTION pymem.audit_retire(p_user_hash char(64), p_chain_pos bigint, p_row_hash bytea,
                                              p_signature bytea)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_head    pymem.audit_chain_heads;
    v_anchor  bigint;
    v_hash    bytea;
    v_deleted bigint;
BEGIN
    IF octet_length(p_row_hash) IS DISTINCT FROM 32 OR octet_length(p_signature) IS DISTINCT FROM 64
       OR p_chain_pos IS NULL OR p_user_hash IS NULL THEN
        RAISE EXCEPTION 'audit_retire: an anchor is a chain, a position, a 32-byte row hash and a 64-byte signature'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT a.chain_pos, a.row_hash INTO v_anchor, v_hash FROM pymem.audit_anchors a
     WHERE a.user_hash = p_user_hash;
    IF v_anchor = p_chain_pos AND v_hash = p_row_hash THEN
        RETURN 0;  -- retired already (a retirement run again)
    END IF;
    v_head := pymem.audit_lock_chain(p_user_hash);
    SELECT a.chain_pos, a.row_hash INTO v_anchor, v_hash FROM pymem.audit_anchors a
     WHERE a.user_hash = p_user_hash FOR UPDATE;
    IF v_anchor = p_chain_pos AND v_hash = p_row_hash THEN
        RETURN 0;  -- retired meanwhile by a concurrent run
    END IF;
    IF p_chain_pos <= coalesce(v_anchor, 1) OR p_chain_pos > v_head.chain_pos
       OR NOT EXISTS (SELECT 1 FROM pymem.audit_log l
                       WHERE l.user_hash = p_user_hash AND l.chain_pos = p_chain_pos AND l.row_hash = p_row_hash) THEN
        RAISE EXCEPTION 'audit_retire: the chain cannot start at that row (a later row than it starts at now, '
                        'up to its head, with that hash)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pymem.audit_anchors (user_hash, chain_pos, row_hash, signature, retired_at)
    VALUES (p_user_hash, p_chain_pos, p_row_hash, p_signature, clock_timestamp())
    ON CONFLICT (user_hash) DO UPDATE
       SET chain_pos = excluded.chain_pos, row_hash = excluded.row_hash, signature = excluded.signature,
           retired_at = excluded.retired_at;
    DELETE FROM pymem.audit_log l WHERE l.user_hash = p_user_hash AND l.chain_pos < p_chain_pos;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    PERFORM pymem.audit_append(p_user_hash, 'audit_retire', 'write', NULL, p_row_hash, '{}');
    RETURN v_deleted;
END
$$;
COMMENT ON FUNCTION pymem.audit_retire(char, bigint, bytea, bytea) IS
    'Moves a chain''s start forward to an existing row (a signed anchor, pymem.audit_anchors), deletes the rows '
    'before it and audits the retirement as audit_retire; returns the number of rows deleted (0, and nothing '
    'audited, when the chain starts there already).';

-- A deliberate point-in-time restore (pymem audit-rebaseline): the log records, in the
-- chain of calls without a tenant, that its checkpoints were re-baselined, naming the
-- digest of what they were re-baselined from and why.
CREATE OR REPLACE FUNCTION pymem.audit_rebaseline(p_digest bytea) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF octet_length(p_digest) IS DISTINCT FROM 32 THEN
        RAISE EXCEPTION 'audit_rebaseline: give a 32-byte digest' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN pymem.audit_append(pymem.no_tenant(), 'audit_rebaseline', 'write', NULL, p_digest, '{}');
END
$$;
COMMENT ON FUNCTION pymem.audit_rebaseline(bytea) IS
    'Records a re-baseline of the audit checkpoints (after a deliberate point-in-time restore) in the no-tenant '
    'chain, with the digest of what it re-baselined from; returns its chain position.';

-- The last v1 row of a chain (v1 chained calls without a tenant under NULL).
CREATE OR REPLACE FUNCTION pymem.audit_v1_tail(p_user_hash char(64), OUT chain_pos bigint, OUT row_hash bytea)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
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
COMMENT ON FUNCTION pymem.audit_v1_tail(char) IS
    'Position and hash of the last row a chain has in pymem.audit_log_v1 (NULLs when none).';

-- Reports the first row per v1 chain that does not verify. Checks, in order: a
-- gap in chain_pos (rows deleted), a row whose rank by seq differs from its
-- chain position (rows reordered), a prev_hash that is not the predecessor's
-- row_hash, and a row_hash that does not match the row (modified).
CREATE OR REPLACE FUNCTION pymem.audit_verify_v1()
    RETURNS TABLE (user_hash char(64), seq bigint, chain_pos bigint, problem text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
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
COMMENT ON FUNCTION pymem.audit_verify_v1() IS
    'The first row of each chain of pymem.audit_log_v1 that does not verify, and why; no rows when intact.';

-- Every broken segment of every chain (each check reports, then re-anchors on
-- the row, so a later break in the same chain is reported too); a head row that
-- disagrees with its chain's last row; and the v1 history's problems. No
-- distributed join calls a function that reads the coordinator-local v1 log (a
-- worker has no such table).
CREATE OR REPLACE FUNCTION pymem.audit_verify()
    RETURNS TABLE (user_hash char(64), chain_pos bigint, problem text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_row       pymem.audit_log;
    v_tail      record;
    v_anchor    record;
    v_head      record;
    v_chain     char(64);
    v_expect    bigint;
    v_prev_hash bytea;
    v_prev_at   timestamptz;
BEGIN
    FOR v_row IN SELECT a.* FROM pymem.audit_log a ORDER BY a.user_hash, a.chain_pos LOOP
        IF v_chain IS NULL OR v_row.user_hash <> v_chain THEN
            -- A chain that began in v1 links its first v2 row to v1's last; a chain whose
            -- old rows were retired starts at its anchor (whose signature only the
            -- client's verifier can check: pymem audit-verify).
            v_chain := v_row.user_hash;
            SELECT a.chain_pos, a.row_hash INTO v_anchor FROM pymem.audit_anchors a WHERE a.user_hash = v_chain;
            IF v_anchor.chain_pos IS NOT NULL THEN
                v_expect := v_anchor.chain_pos;
                v_prev_hash := NULL;
            ELSE
                SELECT * INTO v_tail FROM pymem.audit_v1_tail(v_chain);
                v_expect := coalesce(v_tail.chain_pos, 0) + 1;
                v_prev_hash := coalesce(v_tail.row_hash, '\x');
            END IF;
            v_prev_at := '-infinity';
        END IF;
        user_hash := v_row.user_hash;
        chain_pos := v_row.chain_pos;
        IF v_row.chain_pos <> v_expect THEN
            problem := 'missing row(s) before this one (deleted)';
            RETURN NEXT;
        ELSIF v_prev_hash IS NULL AND v_row.row_hash <> v_anchor.row_hash THEN
            problem := 'not the row the chain''s anchor names (retired rows rewritten)';
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
    -- (pymem audit-checkpoint / audit-verify --checkpoint). The join is on
    -- user_hash, so Citus runs it shard by shard; the v1 tail is read here.
    FOR v_head IN
        SELECT h.user_hash, h.chain_pos, h.row_hash, t.last_pos, l.row_hash AS last_hash
          FROM pymem.audit_chain_heads h
          LEFT JOIN LATERAL (SELECT max(a.chain_pos) AS last_pos FROM pymem.audit_log a
                              WHERE a.user_hash = h.user_hash) t ON true
          LEFT JOIN pymem.audit_log l ON l.user_hash = h.user_hash AND l.chain_pos = h.chain_pos
         WHERE t.last_pos IS DISTINCT FROM h.chain_pos OR l.row_hash IS DISTINCT FROM h.row_hash
         ORDER BY h.user_hash
    LOOP
        CONTINUE WHEN v_head.last_pos IS NULL
                  AND v_head.chain_pos = coalesce((SELECT v.chain_pos FROM pymem.audit_v1_tail(v_head.user_hash) v), 0);
        user_hash := v_head.user_hash;
        chain_pos := v_head.chain_pos;
        problem := CASE
            WHEN v_head.last_pos IS NULL THEN 'all rows of the chain are missing (head says ' || v_head.chain_pos || ')'
            WHEN v_head.last_pos < v_head.chain_pos THEN 'rows missing at the end (head says ' || v_head.chain_pos || ')'
            WHEN v_head.last_pos > v_head.chain_pos THEN 'rows beyond the head (head says ' || v_head.chain_pos || ')'
            ELSE 'the last row''s hash differs from the head' END;
        RETURN NEXT;
    END LOOP;
    RETURN QUERY SELECT coalesce(p.user_hash, pymem.no_tenant()), p.chain_pos, 'v1: ' || p.problem
                   FROM pymem.audit_verify_v1() p;
END
$$;
COMMENT ON FUNCTION pymem.audit_verify() IS
    'Every break in every audit chain (deleted, altered, reordered rows; heads that disagree with their '
    'chains; v1 problems prefixed ''v1: ''); no rows when the log verifies.';

CREATE OR REPLACE FUNCTION pymem.audit_heads() RETURNS TABLE (user_hash char(64), chain_pos bigint, row_hash bytea)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN QUERY
    SELECT h.user_hash, h.chain_pos, h.row_hash FROM pymem.audit_chain_heads h WHERE h.chain_pos > 0
     ORDER BY h.user_hash;
END
$$;
COMMENT ON FUNCTION pymem.audit_heads() IS
    'Every chain''s head (position and row hash), for a signed checkpoint (pymem audit-checkpoint).';

CREATE OR REPLACE FUNCTION pymem.audit_row_hash(p_user_hash char(64), p_chain_pos bigint) RETURNS bytea
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
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
COMMENT ON FUNCTION pymem.audit_row_hash(char, bigint) IS
    'The hash of the row at a chain position (v2, else v1), or NULL: checks a signed checkpoint.';
