"""The ``pymem`` command.

Subcommands: local-db, migrate, doctor, keygen, register-key, register-tenants, rotate-key, key-usage,
rotate-root-key, retire-root-key, root-keys, rotate-tenant-key, index-terms, purge-expired, audit-verify,
audit-checkpoint, audit-archive, audit-verify-archive, audit-retire, audit-rebaseline, distribute, solo-graphs,
export-reranker,
mcp, serve-metrics. ``pymem <command> --help`` describes each; ``pymem --version``.

An expected failure (a bad setting, a missing extra, a database that refuses or
cannot be reached) prints one line naming the fix and exits 2; only a bug prints a
traceback. No line carries a key, a DSN or a parameter value.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import __version__
from .extras import progress_available
from .failures import expected_failure


def _cmd_local_db(args) -> int:
    from . import local_db

    if args.stop:
        print("stopped the embedded server" if local_db.stop() else "the embedded server was not running")
        return 0
    db = local_db.start(args.embedding_dim)
    print(f"export PYMEM_DATABASE_URL='{db.admin_url}'  # superuser: pymem migrate, doctor, rotate-key")
    print(f"export APP_DATABASE_URL='{db.app_url}'  # your application's login ({local_db.APP_LOGIN}, pymem_app)")
    status = _print_findings(db.findings, prefix="# ")
    print("# development only: local connections are trusted, so whoever can open the socket (this OS user)"
          " may log in as any role")
    return status


def _print_findings(findings, prefix: str = "") -> int:
    """One line per doctor finding; the exit code: 1 if any failed."""
    for finding in findings:
        print(f"{prefix}{'ok  ' if finding.ok else 'FAIL'} {finding.check}: {finding.detail}")
    return 0 if all(f.ok for f in findings) else 1


def _cmd_migrate(args) -> int:
    from . import migrations
    from .db import database_url

    dsn = database_url()
    if args.reapply_functions:
        bundle = migrations.reapply_functions(dsn)
        print(f"re-applied the function definitions and grants of revision {bundle}")
        return 0
    migrations.upgrade(dsn, args.revision, embedding_dim=args.embedding_dim, embedding_type=args.embedding_type)
    print(f"migrated to {args.revision}")
    return 0


def _cmd_keygen(args) -> int:
    # Printed, never stored.
    if args.audit:
        from .audit import generate_signing_key

        signing, verify = generate_signing_key()
        print(f"PYMEM_AUDIT_SIGNING_KEY={signing}")
        print(f"PYMEM_AUDIT_VERIFY_KEY={verify}")
        return 0
    from .security import generate_key

    # The seed's format: base64 of 32 random bytes.
    print(f"MEMORY_ENCRYPTION_KEY={generate_key()}")
    print(f"MEMORY_TENANT_HMAC_KEY={generate_key()}")
    return 0


def _cmd_audit_verify(args) -> int:
    from .audit import verify_audit_log
    from .db import connect
    from .doctor import check_schema

    with connect() as conn:
        problems = verify_audit_log(conn, args.checkpoint, database=args.as_database,
                                    since_checkpoint=args.since_checkpoint, archives=args.archive)
        # The chains were recomputed here; the functions that write them, and the
        # tables and policies the walk read, are checked as doctor checks them.
        schema = [f for f in check_schema(conn) if not f.ok]
    if not problems:
        print("audit log: every hash chain verifies, recomputed here"
              + (" from the checkpoint on" if args.since_checkpoint else
                 " and matches the checkpoint" if args.checkpoint else ""))
    for problem in problems:
        print(f"audit log: chain {problem.chain_label}: position {problem.chain_pos}: {problem.problem}")
    if problems.partial:
        print(f"audit log: {len(problems.partial)} chains verified from their signed anchors on, their older rows"
              " retired (and checkpointed rows among them not checked): "
              + ("they are in no archive given" if args.archive else
                 "pass every archive with --archive to verify them whole"))
    if not schema:
        print("schema: the functions, tables and policies are the ones shipped")
    if _print_findings(schema) or problems:
        return 1
    return 3 if args.archive and problems.partial else 0


def _cmd_verify_rows(args) -> int:
    from .db import connect
    from .freshness import verify_rows

    with connect() as conn:
        report = verify_rows(conn, progress=not args.no_progress and progress_available(), archives=args.archive)
    for problem in report.problems:
        where = f" row {problem.row_id}" if problem.row_id else ""
        print(f"tenant {problem.user_hash[:12]}...{where}: {problem.problem}")
    print(f"checked {report.rows_checked} live rows of {report.tenants} tenants: {len(report.problems)} problems")
    if report.unbound:
        print(f"{report.unbound} rows were last written before revision 0016 and have no write record:"
              " `pymem rotate-key --all` re-seals them with one")
    if report.retired:
        print(f"{report.retired} tenants were not checked: their old audit rows were retired; pass their archives"
              " with --archive")
    return 1 if report.problems else 3 if report.retired else 0


def _cmd_audit_checkpoint(args) -> int:
    from .audit import write_checkpoint
    from .db import connect

    with connect() as conn:
        chains = write_checkpoint(conn, args.out)
    print(f"signed the heads of {chains} chains into {args.out}")
    return 0


def _cmd_audit_archive(args) -> int:
    from .audit_retention import archive_segments
    from .db import connect

    with connect() as conn:
        report = archive_segments(conn, args.checkpoint, args.out)
    if report.manifest is None:
        print("nothing to archive: every chain starts at or after the checkpoint's heads")
        return 0
    print(f"archived {report.rows} rows of {report.chains} chains: {report.manifest}")
    print("keep it with the checkpoints, check it (pymem audit-verify-archive), then pymem audit-retire")
    return 0


def _cmd_audit_verify_archive(args) -> int:
    from .audit import verify_key
    from .audit_archive import read_archive

    failed = False
    for manifest in args.manifest:
        archive = read_archive(manifest, verify_key(), keep_rows=False)
        for problem in archive.problems:
            print(f"{manifest}: {problem}")
        if not archive.problems:
            print(f"{manifest}: {archive.row_count} rows of {len(archive.anchors)} chains verify")
        failed = failed or bool(archive.problems)
    return 1 if failed else 0


def _cmd_audit_retire(args) -> int:
    from .audit_retention import retire_segments
    from .db import connect

    with connect() as conn:
        deleted = retire_segments(conn, args.manifest, progress=not args.no_progress and progress_available())
    print(f"retired {deleted} audit rows behind the archive's signed anchors")
    return 0


def _cmd_audit_rebaseline(args) -> int:
    from .audit_retention import rebaseline
    from .db import connect

    with connect() as conn:
        position = rebaseline(conn, args.checkpoint, args.out, args.reason)
    print(f"re-baseline recorded in the audit log (no-tenant chain, position {position}); new checkpoint: {args.out}")
    return 0


def _cmd_register_key(args) -> int:
    from .db import connect

    with connect() as conn:
        added = conn.execute("SELECT pymem.register_encryption_key(%s::pg_catalog.int4)", (args.key_id,)).fetchone()[0]
    print(f"key id {args.key_id} {'registered' if added else 'was already registered'}")
    return 0


def _cmd_register_tenants(args) -> int:
    from .db import connect
    from .tenant import register_tenants

    with connect() as conn:
        added = register_tenants(conn)
    print(f"registered the proofs of {added} tenants that predate revision 0015")
    return 0


def _cmd_distribute(args) -> int:
    from .db import database_url
    from .distribute import distribute

    report = distribute(database_url(), shard_count=args.shards)
    print(f"distributed over {report.workers} workers, {report.shard_count} shards per table;"
          f" {report.functions_delegated} API functions run on the tenant's worker")
    return 0


def _cmd_doctor(args) -> int:
    from .db import connect
    from .doctor import check_deployment, check_keys, check_schema, check_solo_graphs

    with connect() as conn:
        findings = check_schema(conn)
        if findings[0].ok:  # at this pymem's revision
            findings.append(check_solo_graphs(conn))
            findings += check_keys(conn)
        findings += check_deployment(conn, args.role) if args.role else []
    return _print_findings(findings)


def _cmd_rotate_key(args) -> int:
    from .db import aconnect
    from .rotation import key_usage, rotate_encryption_key

    async def run():
        conn = await aconnect()
        try:
            report = await rotate_encryption_key(conn, batch_size=args.batch_size, every_row=args.every_row,
                                                 max_rows_per_second=args.max_rows_per_second,
                                                 progress=not args.no_progress and progress_available(),
                                                 user_hashes=args.tenant or None, new_data_key=args.new_data_key)
            usage = await key_usage(conn)
        finally:
            await conn.close()
        print(f"re-sealed {report.rows_resealed} rows of {report.tenants} tenants in {report.batches} batches")
        if report.quarantined:
            print(f"quarantined {report.quarantined} rows that did not open (listed by pymem.quarantined());"
                  " they stay under their old key")
        print(f"rows left under keys of the environment's ring: {report.rows_left}")
        _print_usage(usage)
        return report

    report = asyncio.run(run())
    # 3: finished, but an old key cannot be retired yet.
    return 3 if report.rows_left else 0


def _print_usage(usage) -> None:
    for u in usage:
        name = f"key id {u.key_id}" if u.key_id > 0 else f"tenant data keys, version {-u.key_id}"
        print(f"{name}: {u.live_rows} live rows, {u.seals} seals{' (most by one key)' if u.key_id < 0 else ''},"
              f" {u.tenants} tenants")


def _cmd_rotate_root_key(args) -> int:
    from .db import aconnect, connect
    from .root_rotation import destroyed_data_keys, rotate_root_key

    destroyed = None
    if args.checkpoint is not None:  # "" too: refused there, never taken as no checkpoint
        with connect() as conn:
            destroyed = destroyed_data_keys(conn, args.checkpoint)

    async def run():
        conn = await aconnect()
        try:
            return await rotate_root_key(conn, batch_size=args.batch_size, max_keys_per_second=args.max_keys_per_second,
                                         progress=not args.no_progress and progress_available(), destroyed=destroyed)
        finally:
            await conn.close()

    report = asyncio.run(run())
    print(f"re-wrapped {report.rewrapped} data keys under {report.root_key} in {report.batches} batches;"
          " pymem root-keys lists what is left under older root keys")
    return 0


def _cmd_root_keys(args) -> int:
    from .db import aconnect
    from .root_keys import provider
    from .root_rotation import root_key_usage

    async def run():
        conn = await aconnect()
        try:
            return await root_key_usage(conn)
        finally:
            await conn.close()

    current = provider().current()
    for u in asyncio.run(run()):
        state = ("current" if u.root_key == current else
                 f"retired {u.retired_at.isoformat()}" if u.retired_at else
                 f"last used {u.last_used_at.isoformat()}" if u.last_used_at else "")
        print(f"{u.root_key}: {u.data_keys} data keys of {u.tenants} tenants; {state}")
    return 0


def _cmd_retire_root_key(args) -> int:
    from .db import aconnect
    from .root_rotation import retire_root_key

    def confirm(consequence: str) -> bool:
        print(consequence)
        if args.yes:
            return True
        return input(f"Type the root key's reference ({args.root_key}) to retire it: ").strip() == args.root_key

    async def run():
        conn = await aconnect()
        try:
            return await retire_root_key(conn, args.root_key, confirm)
        finally:
            await conn.close()

    last_used = asyncio.run(run())
    if last_used is None:
        print("not retired")
        return 1
    print(f"retired {args.root_key}: destroy it where it is kept when no backup from before"
          f" {last_used.isoformat()} must be restored any more")
    return 0


def _cmd_key_usage(args) -> int:
    from .db import aconnect
    from .rotation import key_usage

    async def run():
        conn = await aconnect()
        try:
            _print_usage(await key_usage(conn))
        finally:
            await conn.close()

    asyncio.run(run())
    return 0


def _cmd_rotate_tenant_key(args) -> int:
    from .config import key_material
    from .db import aconnect
    from .errors import ConfigurationError
    from .rotation import rotate_tenant_key

    material = key_material()
    if not material.tenant_hmac_key or not material.new_tenant_hmac_key:
        raise ConfigurationError("set MEMORY_TENANT_HMAC_KEY (current) and MEMORY_TENANT_HMAC_KEY_NEW (next)")
    with open(args.user_ids_file, encoding="utf-8") as handle:
        user_ids = [line.rstrip("\n") for line in handle if line.strip()]

    async def run():
        conn = await aconnect()
        try:
            return await rotate_tenant_key(conn, user_ids, material.tenant_hmac_key,
                                           material.new_tenant_hmac_key, progress=progress_available())
        finally:
            await conn.close()

    moved = asyncio.run(run())
    print(f"moved {moved} rows of {len(user_ids)} users to the new HMAC key; "
          "now set MEMORY_TENANT_HMAC_KEY to the new key")
    return 0


def _each_tenant(args, work, bar: str | None = None) -> tuple[int, int]:
    """``await work(conn, user_hash)`` for the users of ``--user-ids-file`` or, with ``--all``,
    every tenant with rows, under a progress bar of tenants named ``bar`` (unless
    ``--no-progress``); return (the sum of what it returned, the tenants)."""
    from .db import aconnect
    from .extras import progress_iter
    from .rotation import key_usage
    from .security import hmac_user

    if args.user_ids_file:
        with open(args.user_ids_file, encoding="utf-8") as handle:
            user_hashes = [hmac_user(line.rstrip("\n")) for line in handle if line.strip()]

    async def run():
        conn = await aconnect()
        try:
            hashes = user_hashes if args.user_ids_file else await _every_tenant(conn, key_usage)
            shown = bar is not None and not args.no_progress and progress_available()
            return sum([await work(conn, user_hash)
                        for user_hash in progress_iter(hashes, enabled=shown, unit="tenant", desc=bar)]), len(hashes)
        finally:
            await conn.close()

    return asyncio.run(run())


def _cmd_index_terms(args) -> int:
    from .term_backfill import index_terms_of

    progress = not args.no_progress and progress_available()
    indexed, tenants = _each_tenant(args, lambda conn, user_hash: index_terms_of(conn, user_hash,
                                                                                  rebuild=args.rebuild,
                                                                                  progress=progress))
    print(f"gave keyword terms to {indexed} rows of {tenants} tenants")
    return 0


def _cmd_purge_expired(args) -> int:
    from .lifecycle import purge_expired_of

    purged, tenants = _each_tenant(args, purge_expired_of, bar="purging")
    print(f"purged {purged} expired chunks of {tenants} tenants")
    return 0


async def _every_tenant(conn, key_usage) -> list[str]:
    """Every tenant with live rows (by hash), from the key counts (pymem_maintainer)."""
    key_ids = [u.key_id for u in await key_usage(conn)]
    cursor = await conn.execute("SELECT user_hash FROM pymem.tenants_with_keys(%b::pg_catalog.int4[])", (key_ids,))
    return [row[0] for row in await cursor.fetchall()]


def _cmd_solo_graphs(args) -> int:
    from .db import connect
    from .solo_graphs import apply_solo_graphs, plan_solo_graphs

    with connect() as conn:
        plan = plan_solo_graphs(conn)
        print(f"tenants of {plan.min_rows}+ rows without a solo graph: {len(plan.build)}"
              f" ({sum(rows for _, rows in plan.build)} rows); solo graphs to drop: {len(plan.drop)};"
              f" kept: {plan.kept}; beyond solo_graph_max_count ({plan.max_count}): {plan.left_out}")
        if args.dry_run:
            return 0
        report = apply_solo_graphs(conn, plan, progress=not args.no_progress and progress_available())
    print(f"built {report.built} and dropped {report.dropped} solo graphs")
    if report.failed:
        print(f"{len(report.failed)} builds failed (SQLSTATE {', '.join(sorted(set(report.failed)))});"
              " the next run retries them")
        return 1
    return 0


def _cmd_export_reranker(args) -> int:
    from .onnx_export import export_reranker, format_summary

    manifest = export_reranker(args.model, args.out, int8=args.int8, fp16=args.fp16, overwrite=args.overwrite)
    print(format_summary(manifest, args.out))
    return 0


def _cmd_serve_metrics(args) -> int:
    from .metrics_app import serve_metrics

    serve_metrics(host=args.host, port=args.port)
    return 0


def _cmd_mcp(args) -> int:
    from .mcp_server import serve

    serve(args.user_id, args.embedder)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pymem", description="Encrypted multi-tenant memory store on Postgres.")
    parser.add_argument("--version", action="version", version=f"pymem {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    local = sub.add_parser("local-db", help="start the embedded Postgres, migrate it, create an app login, "
                                            "print their DSNs (development only; needs the embedded extra)")
    local.add_argument("--embedding-dim", type=int, default=None, help="vector dimension of a new database (384)")
    local.add_argument("--stop", action="store_true", help="stop the embedded server instead")
    local.set_defaults(func=_cmd_local_db)

    migrate = sub.add_parser("migrate", help="alembic upgrade against PYMEM_DATABASE_URL or the embedded server")
    migrate.add_argument("--revision", default="head")
    migrate.add_argument("--embedding-dim", type=int, default=None,
                         help="vector dimension of a new schema (384); an existing one keeps its own")
    migrate.add_argument("--embedding-type", choices=("vector", "halfvec"), default=None,
                         help="how a new schema (or the upgrade to revision 0023) stores searchable embeddings:"
                              " vector (float32) or halfvec (float16, up to 4000 dimensions)")
    migrate.add_argument("--reapply-functions", action="store_true",
                         help="re-apply the shipped function definitions and grants (after pymem doctor found "
                              "one replaced); tables and rows are untouched")
    migrate.set_defaults(func=_cmd_migrate)

    keygen = sub.add_parser("keygen", help="print fresh MEMORY_ENCRYPTION_KEY / MEMORY_TENANT_HMAC_KEY")
    keygen.add_argument("--audit", action="store_true",
                        help="print an audit checkpoint key pair (PYMEM_AUDIT_SIGNING_KEY / _VERIFY_KEY) instead")
    keygen.set_defaults(func=_cmd_keygen)

    verify = sub.add_parser("audit-verify", help="verify the audit log's hash chains (as pymem_auditor)")
    verify.add_argument("--checkpoint", help="also check a signed checkpoint (PYMEM_AUDIT_VERIFY_KEY)")
    verify.add_argument("--since-checkpoint", action="store_true",
                        help="verify only the rows appended since --checkpoint (incremental)")
    verify.add_argument("--as-database", metavar="NAME",
                        help="the database the checkpoint was taken of, when this one is a restore of it"
                             " under another name")
    verify.add_argument("--archive", action="append", default=[], metavar="MANIFEST",
                        help="an archive of retired rows (pymem audit-archive), walked ahead of the log; repeatable")
    verify.set_defaults(func=_cmd_audit_verify)

    rows = sub.add_parser("verify-rows", help="check every live row against its latest audited write (with the keys;"
                          " needs pymem_auditor and pymem_maintainer)")
    rows.add_argument("--no-progress", action="store_true")
    rows.add_argument("--archive", action="append", default=[], metavar="MANIFEST",
                      help="an archive of retired audit rows (pymem audit-archive); repeatable")
    rows.set_defaults(func=_cmd_verify_rows)

    checkpoint = sub.add_parser("audit-checkpoint",
                                help="sign every chain head into a file (PYMEM_AUDIT_SIGNING_KEY)")
    checkpoint.add_argument("--out", required=True, help="checkpoint file, kept outside the database")
    checkpoint.set_defaults(func=_cmd_audit_checkpoint)

    archive = sub.add_parser("audit-archive", help="archive each chain's rows up to a signed checkpoint's heads and"
                             " sign the chains' new starts (PYMEM_AUDIT_SIGNING_KEY; as pymem_auditor)")
    archive.add_argument("--checkpoint", required=True, help="the checkpoint whose heads the rows up to may go")
    archive.add_argument("--out", required=True, help="a folder, kept with the checkpoints, outside the database")
    archive.set_defaults(func=_cmd_audit_archive)

    verify_archive = sub.add_parser("audit-verify-archive", help="check archives of retired audit rows"
                                    " (PYMEM_AUDIT_VERIFY_KEY); needs no database")
    verify_archive.add_argument("manifest", nargs="+", help="an archive's .manifest.json")
    verify_archive.set_defaults(func=_cmd_audit_verify_archive)

    retire = sub.add_parser("audit-retire", help="delete the rows an archive holds from the log, behind its signed"
                            " anchors (PYMEM_AUDIT_VERIFY_KEY; needs pymem_maintainer)")
    retire.add_argument("--manifest", required=True, help="the archive's .manifest.json")
    retire.add_argument("--no-progress", action="store_true")
    retire.set_defaults(func=_cmd_audit_retire)

    rebaseline = sub.add_parser("audit-rebaseline", help="after a deliberate point-in-time restore: record it in the"
                                " log and sign a new checkpoint (needs pymem_auditor and pymem_maintainer)")
    rebaseline.add_argument("--checkpoint", required=True,
                            help="the last checkpoint written before the restore's target")
    rebaseline.add_argument("--out", required=True, help="the new checkpoint")
    rebaseline.add_argument("--reason", required=True, help="why (a change ticket, say); recorded, not secret")
    rebaseline.set_defaults(func=_cmd_audit_rebaseline)

    register = sub.add_parser("register-key", help="allow rows under an AES key id (needs pymem_maintainer)")
    register.add_argument("key_id", type=int)
    register.set_defaults(func=_cmd_register_key)

    doctor = sub.add_parser("doctor", help="check the schema against this pymem, and an app login's hardening")
    doctor.add_argument("--role", help="also check the application's login role")
    doctor.set_defaults(func=_cmd_doctor)

    sub.add_parser("register-tenants", help="once after upgrading to 0015: register the tenant proofs of existing "
                   "tenants (the DBA, with MEMORY_TENANT_HMAC_KEY)").set_defaults(func=_cmd_register_tenants)

    dist = sub.add_parser("distribute", help="distribute pymem over the Citus cluster (after alembic upgrade head)")
    dist.add_argument("--shards", type=int, default=32, help="shards per distributed table (default 32)")
    dist.set_defaults(func=_cmd_distribute)

    solo = sub.add_parser("solo-graphs", help="give each tenant of pymem.tuning.solo_graph_min_rows rows or more an"
                                              " HNSW graph of its own, drop those of shrunk tenants (the DBA;"
                                              " after bulk loads and on a schedule)")
    solo.add_argument("--dry-run", action="store_true", help="only say what it would build and drop")
    solo.add_argument("--no-progress", action="store_true")
    solo.set_defaults(func=_cmd_solo_graphs)

    export = sub.add_parser("export-reranker", help="export a Hugging Face cross-encoder to ONNX (+ manifest)")
    export.add_argument("model", help="hub id (needs the internet) or a local model directory")
    export.add_argument("--out", required=True, help="target directory, e.g. ~/.pymem/models/ms-marco-TinyBERT-L2-v2 (where PYMEM_RERANK_MODEL defaults to)")
    export.add_argument("--int8", action="store_true", help="add a dynamically quantized int8 variant (CPU)")
    export.add_argument("--fp16", action="store_true", help="add an fp16 variant (CUDA)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export in --out")
    export.set_defaults(func=_cmd_export_reranker)

    mcp = sub.add_parser("mcp", help="an MCP memory server over stdio for one user (the mcp extra)")
    mcp.add_argument("--user-id", help="the user every tool acts for (default PYMEM_MCP_USER_ID); never a tool's"
                                       " argument")
    mcp.add_argument("--embedder", metavar="MODULE:ATTR",
                     help="an object with embed(texts), or what makes one (default PYMEM_MCP_EMBEDDER), e.g."
                          " pymem_devtools.minilm:MiniLMEmbedder")
    mcp.set_defaults(func=_cmd_mcp)

    metrics = sub.add_parser("serve-metrics", help="serve the reranker's Prometheus metrics (prometheus-client)")
    metrics.add_argument("--host", default="127.0.0.1")
    metrics.add_argument("--port", type=int, default=9464)
    metrics.set_defaults(func=_cmd_serve_metrics)

    rotate = sub.add_parser("rotate-key", help="re-seal rows under old AES key ids with the active key (resumable)")
    rotate.add_argument("--batch-size", type=int, default=500, help="rows per transaction")
    rotate.add_argument("--max-rows-per-second", type=float, default=None, help="rate limit")
    rotate.add_argument("--all", action="store_true", dest="every_row",
                        help="re-seal every row, also those under the active key (gives rows written before"
                             " revision 0016 their write record; a re-run starts over)")
    rotate.add_argument("--tenant", action="append", metavar="USER_HASH",
                        help="re-seal this tenant's rows under its current data key (repeatable)")
    rotate.add_argument("--new-data-key", action="store_true",
                        help="with --tenant: give each a new data key first (a tenant's key rotation)")
    rotate.add_argument("--no-progress", action="store_true")
    rotate.set_defaults(func=_cmd_rotate_key)

    sub.add_parser("key-usage", help="live rows and seals per AES key id").set_defaults(func=_cmd_key_usage)

    rewrap = sub.add_parser("rotate-root-key", help="re-wrap every tenant data key under the current root key"
                                                    " (resumable; rows are not touched)")
    rewrap.add_argument("--batch-size", type=int, default=500, help="data keys per transaction")
    rewrap.add_argument("--max-keys-per-second", type=float, default=None,
                        help="rate limit (a KMS's request quota)")
    # One of the two, never a silent default: without a checkpoint the rotation trusts the
    # table, and a destroyed key a superuser put back would be re-wrapped (threat model E2).
    verified = rewrap.add_mutually_exclusive_group(required=True)
    verified.add_argument("--checkpoint", metavar="FILE",
                          help="a signed audit checkpoint (pymem audit-checkpoint): the chains are verified against it"
                               " and no data key they record as destroyed is re-wrapped (needs pymem_auditor too)")
    verified.add_argument("--unverified", action="store_true",
                          help="trust the table: a destroyed data key put back from a backup is re-wrapped too")
    rewrap.add_argument("--no-progress", action="store_true")
    rewrap.set_defaults(func=_cmd_rotate_root_key)
    sub.add_parser("root-keys", help="root keys with the data keys under each, and retirements"
                   ).set_defaults(func=_cmd_root_keys)
    retire = sub.add_parser("retire-root-key", help="record an old root key as retired, after saying which backups"
                                                    " its destruction makes unreadable")
    retire.add_argument("root_key", help="its reference, as pymem root-keys lists it")
    retire.add_argument("--yes", action="store_true", help="do not ask (the consequence is still printed)")
    retire.set_defaults(func=_cmd_retire_root_key)

    terms = sub.add_parser("index-terms", help="give rows written without keyword terms theirs, for hybrid search"
                                               " (resumable)")
    whom = terms.add_mutually_exclusive_group(required=True)
    whom.add_argument("--user-ids-file", help="the users whose rows to index, one id per line")
    whom.add_argument("--all", action="store_true", help="every tenant with rows (needs pymem_maintainer too)")
    terms.add_argument("--rebuild", action="store_true",
                       help="give every row its terms anew (after upgrading PyStemmer or changing PYMEM_TERM_LANGUAGE)")
    terms.add_argument("--no-progress", action="store_true")
    terms.set_defaults(func=_cmd_index_terms)

    purge = sub.add_parser("purge-expired", help="delete expired chunks (audited as purge); safe to run from a"
                                                 " scheduler")
    whom = purge.add_mutually_exclusive_group(required=True)
    whom.add_argument("--user-ids-file", help="the users whose expired chunks to delete, one id per line")
    whom.add_argument("--all", action="store_true", help="every tenant with rows (needs pymem_maintainer too)")
    purge.add_argument("--no-progress", action="store_true")
    purge.set_defaults(func=_cmd_purge_expired)

    retenant = sub.add_parser("rotate-tenant-key",
                              help="move users to MEMORY_TENANT_HMAC_KEY_NEW (user ids from a file, one per line)")
    retenant.add_argument("--user-ids-file", required=True)
    retenant.set_defaults(func=_cmd_rotate_tenant_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for an expected failure, after one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - sorted into expected failures and bugs below
        message = expected_failure(exc, args.command)
        if message is None:
            raise
        print(f"pymem {args.command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
