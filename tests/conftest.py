"""The suites' fixtures are plugins in tests/fixtures/; helpers are in tests/utils.py."""

pytest_plugins = (
    "tests.fixtures.fix_audit",
    "tests.fixtures.fix_db",
    "tests.fixtures.fix_citus",
    "tests.fixtures.fix_keys",
    "tests.fixtures.fix_models",
    "tests.fixtures.fix_report",
)
