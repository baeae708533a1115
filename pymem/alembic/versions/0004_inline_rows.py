"""Inline chunk rows: ciphertext stored EXTERNAL (never compressed), embedding MAIN."""

from pymem.migrations import revision_steps

revision, down_revision = "0004", "0003"
upgrade, downgrade = revision_steps("0004_inline_rows")
