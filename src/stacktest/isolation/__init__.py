"""Per-test isolation on shared, long-running services.

One stack serves a whole test session; each test gets its own slice of it:
a Postgres database cloned from a template (:mod:`.postgres`), a Valkey key
prefix (:mod:`.valkey`), a NATS subject prefix and streams (:mod:`.nats`), all
named after the test (:mod:`.names`). Nothing here depends on pytest.
"""
