"""The ``pymem-dev`` command: pymem's development tools.

``pymem-dev sql arms|cut|check|docs`` maintain ``pymem/sql`` in a checkout; the
other subcommands run the demo and the benchmarks. ``pymem-dev <command> --help``
describes each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_sql_arms(args) -> int:
    from .search_arms import with_generated_arms
    from .sql_release import Checkout

    path = Checkout.of_installed_pymem().sql / "functions" / "61_search_rows.sql"
    text = path.read_text()
    updated = with_generated_arms(text)
    path.write_text(updated)
    print(f"{path.name}: arms for buckets 1-63 {'rewritten' if updated != text else 'already match bucket 0'}")
    return 0


def _cmd_sql_cut(args) -> int:
    from .sql_release import Checkout, cut

    for written in cut(Checkout.of_installed_pymem(), args.name, args.title, amend=args.amend):
        print(f"wrote {written}")
    print("recorded the checksums; now regenerate the docs: pymem-dev sql docs")
    return 0


def _cmd_sql_check(args) -> int:
    from .sql_release import Checkout, problems

    found = problems(Checkout.of_installed_pymem())
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


def _cmd_sql_docs(args) -> int:
    from .sql_docs import write_docs
    from .sql_release import Checkout

    for path in write_docs(Checkout.of_installed_pymem()):
        print(f"wrote {path}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import main

    return main()


def _cmd_bench(args) -> int:
    from .bench.run import main

    return main(args.scale, Path(args.out), args.only)


def build_parser() -> argparse.ArgumentParser:
    from .bench.run import BENCHES, DEFAULT_OUT, SCALES

    parser = argparse.ArgumentParser(prog="pymem-dev", description="pymem's development tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("demo", help="the end-to-end demo on the embedded Postgres (make demo)").set_defaults(
        func=_cmd_demo)

    bench = sub.add_parser("bench", help="the benchmark suite: JSON + markdown in benchmarks/results/ (or --out)")
    bench.add_argument("--scale", choices=SCALES, default="full",
                       help="xl: a million rows with tenants sharing topics (search only)")
    bench.add_argument("--out", default=str(DEFAULT_OUT), help="directory for <scale>.json and <scale>.md")
    bench.add_argument("--only", nargs="+", choices=BENCHES,
                       help="re-run these and keep the other results of the same scale")
    bench.set_defaults(func=_cmd_bench)

    sql = sub.add_parser("sql", help="maintain pymem/sql in a checkout").add_subparsers(dest="sql", required=True)
    sql.add_parser("arms", help="rewrite search_rows_v2's arms 1-63 from its bucket-0 arm").set_defaults(
        func=_cmd_sql_arms)
    cut = sql.add_parser("cut", help="freeze functions/ into released/NNNN.sql for a new revision")
    cut.add_argument("name", help="NNNN_snake_case, NNNN the next revision")
    cut.add_argument("title", help="one line: what the revision changes (the alembic file's docstring)")
    cut.add_argument("--amend", action="store_true", help="re-cut the newest revision (never one that was released)")
    cut.set_defaults(func=_cmd_sql_cut)
    sql.add_parser("check", help="exit 1 unless functions/ is the released head").set_defaults(func=_cmd_sql_check)
    sql.add_parser("docs", help="regenerate docs/sql-api.md and docs/schema.sql from a fresh database").set_defaults(
        func=_cmd_sql_docs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError) as exc:
        print(f"pymem-dev {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
