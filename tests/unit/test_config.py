"""Settings: a malformed variable is a ValueError that names the variable, never its value."""

from __future__ import annotations

import pytest

from pymem.config import get_settings

SECRET_LOOKING = "s3cr3t-value-do-not-echo"


@pytest.mark.parametrize("name, value", [
    ("PYMEM_PG_VERSION", "seventeen"),
    ("PYMEM_PG_VERSION", "17"),
    ("PYMEM_EMBEDDING_DIM", "99999"),
    ("RERANK_ENABLED", "maybe"),
    ("RERANK_CIRCUIT_MS", "fast"),
    ("PYMEM_RERANK_DEVICE", "tpu"),
])
def test_malformed_setting_names_the_variable_not_the_value(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as info:
        get_settings()
    assert name in str(info.value) and value not in str(info.value)


def test_a_variable_set_to_blank_takes_the_default(monkeypatch):
    monkeypatch.setenv("RERANK_ENABLED", " ")
    monkeypatch.setenv("PYMEM_RERANK_THREADS", "")
    settings = get_settings()
    assert settings.rerank_enabled is True and settings.rerank_threads == 0
