"""``pymem-dev demo`` (what ``make demo`` runs), in-process against a fresh database."""

from __future__ import annotations

from pymem_devtools.cli import main


def test_demo_runs_end_to_end(cluster, monkeypatch, capsys):
    monkeypatch.setenv("PYMEM_DATABASE_URL", cluster.fresh_database("pymem_cli_demo", embedding_dim=384))
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "refused" in out and "invisible to this tenant" in out
