"""The tests' snapshots (tests/helpers.py) see every change, though their statements are
prepared once per connection."""

from __future__ import annotations

import sqlalchemy as sa

from tests.helpers import schema_fingerprint, snapshot_rows


def test_snapshots_on_one_connection_see_tables_added_altered_dropped_and_made_anew(
    engine: sa.Engine,
) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("CREATE TABLE t (a int); INSERT INTO t VALUES (1)")
        assert snapshot_rows(conn) == {"t": ['{"a": 1}']}
        assert schema_fingerprint(conn)["columns"] == ["t.a integer null=true default=-"]

        conn.exec_driver_sql("ALTER TABLE t ADD COLUMN b int DEFAULT 2; CREATE TABLE u (c int)")
        assert snapshot_rows(conn) == {"t": ['{"a": 1, "b": 2}'], "u": []}
        assert schema_fingerprint(conn)["columns"] == [
            "t.a integer null=true default=-",
            "t.b integer null=true default=2",
            "u.c integer null=true default=-",
        ]

        conn.exec_driver_sql("DROP TABLE t, u; CREATE TABLE t (c text); INSERT INTO t VALUES ('x')")
        assert snapshot_rows(conn) == {"t": ['{"c": "x"}']}, (
            "a snapshot on this connection read a table as it was before it was made anew"
        )
        assert schema_fingerprint(conn)["columns"] == ["t.c text null=true default=-"]
