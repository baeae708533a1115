"""The ``pymem`` command.

Subcommands: demo, migrate, keygen, audit-verify, bench, export-reranker,
serve-metrics. ``pymem <command> --help`` describes each.
"""

from __future__ import annotations

import argparse
import sys


def _cmd_demo(args) -> int:
    from .demo import main

    return main()


def _cmd_migrate(args) -> int:
    from . import migrations
    from .db import database_url

    migrations.upgrade(database_url(), args.revision, embedding_dim=args.embedding_dim)
    print(f"migrated to {args.revision}")
    return 0


def _cmd_keygen(args) -> int:
    from .security import generate_key

    # The seed's format: base64 of 32 random bytes. Printed, never stored.
    print(f"MEMORY_ENCRYPTION_KEY={generate_key()}")
    print(f"MEMORY_TENANT_HMAC_KEY={generate_key()}")
    return 0


def _cmd_audit_verify(args) -> int:
    from .audit import verify_audit_log
    from .db import connect

    with connect() as conn:
        problems = verify_audit_log(conn)
    if not problems:
        print("audit log: every hash chain verifies")
        return 0
    for problem in problems:
        print(f"audit log: chain {problem.chain_label}: seq {problem.seq} "
              f"(position {problem.chain_pos}): {problem.problem}")
    return 1


def _cmd_bench(args) -> int:
    from benchmarks.run import main

    return main(["--scale", args.scale])


def _cmd_export_reranker(args) -> int:
    from .onnx_export import ExportError, export_reranker, format_summary

    try:
        manifest = export_reranker(args.model, args.out, int8=args.int8, fp16=args.fp16, overwrite=args.overwrite)
    except ExportError as exc:
        print(f"pymem export-reranker: {exc}", file=sys.stderr)
        return 2
    print(format_summary(manifest, args.out))
    return 0


def _cmd_serve_metrics(args) -> int:
    from .metrics_server import serve_metrics

    serve_metrics(host=args.host, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pymem", description="Encrypted multi-tenant memory store on Postgres.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("demo", help="run the end-to-end demo on the embedded Postgres").set_defaults(func=_cmd_demo)

    migrate = sub.add_parser("migrate", help="alembic upgrade against PYMEM_DATABASE_URL or the embedded server")
    migrate.add_argument("--revision", default="head")
    migrate.add_argument("--embedding-dim", type=int, default=None, help="vector dimension (first install only)")
    migrate.set_defaults(func=_cmd_migrate)

    sub.add_parser("keygen", help="print fresh MEMORY_ENCRYPTION_KEY / MEMORY_TENANT_HMAC_KEY").set_defaults(
        func=_cmd_keygen)

    sub.add_parser("audit-verify", help="verify the audit log's hash chains").set_defaults(func=_cmd_audit_verify)

    export = sub.add_parser("export-reranker", help="export a Hugging Face cross-encoder to ONNX (+ manifest)")
    export.add_argument("model", help="hub id (needs the internet) or a local model directory")
    export.add_argument("--out", required=True, help="target directory, e.g. onnx_models/ms-marco-TinyBERT-L2-v2")
    export.add_argument("--int8", action="store_true", help="add a dynamically quantized int8 variant (CPU)")
    export.add_argument("--fp16", action="store_true", help="add an fp16 variant (CUDA)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export in --out")
    export.set_defaults(func=_cmd_export_reranker)

    metrics = sub.add_parser("serve-metrics", help="serve /metrics (Prometheus) and /metrics/memory (JSON)")
    metrics.add_argument("--host", default="127.0.0.1")
    metrics.add_argument("--port", type=int, default=9464)
    metrics.set_defaults(func=_cmd_serve_metrics)

    bench = sub.add_parser("bench", help="run the benchmark suite (JSON + markdown in benchmarks/results/)")
    bench.add_argument("--scale", choices=("tiny", "quick", "full"), default="full")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code. Errors print one line, never a secret."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"pymem {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
