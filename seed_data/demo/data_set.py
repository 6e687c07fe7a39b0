"""The parameters that define a demo data set, and their record in the database.

A seed, an as-of date, the source material, the products on sale and the generator's
version together decide every demo row. The loader records them in ``demo_data_set``
(created by a migration) before it writes its first customer, and compares them on every
later run: customers are only ever added to a data set made with the same parameters,
never mixed with another's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from seed_data.demo.generate import GENERATOR_VERSION, DemoGenerator


@dataclass(frozen=True)
class DataSet:
    seed: int
    as_of: dt.date
    source_sha256: str
    catalogue_sha256: str
    generator_version: int

    @classmethod
    def of(cls, generator: DemoGenerator) -> DataSet:
        return cls(
            generator.seed,
            generator.as_of.date(),
            generator.source.sha256,
            generator.catalogue_sha256,
            GENERATOR_VERSION,
        )

    def options(self) -> str:
        return f"--seed {self.seed} --as-of {self.as_of.isoformat()}"


def differences(recorded: DataSet, wanted: DataSet) -> list[str]:
    """What differs between the recorded data set and this run's, in the user's terms."""
    found = []
    if recorded.seed != wanted.seed:
        found.append(f"--seed {recorded.seed} (this run: {wanted.seed})")
    if recorded.as_of != wanted.as_of:
        found.append(f"--as-of {recorded.as_of} (this run: {wanted.as_of})")
    if recorded.source_sha256 != wanted.source_sha256:
        found.append("the source material (seed_data/demo/source_material.yaml) has changed")
    if recorded.catalogue_sha256 != wanted.catalogue_sha256:
        found.append("the products on sale have changed")
    if recorded.generator_version != wanted.generator_version:
        found.append(
            f"generator version {recorded.generator_version} "
            f"(this checkout: {wanted.generator_version})"
        )
    return found


_COLUMNS = "seed, as_of, source_sha256, catalogue_sha256, generator_version"


def recorded_data_set(cursor: Any) -> DataSet | None:
    cursor.execute(f"SELECT {_COLUMNS} FROM demo_data_set")
    row = cursor.fetchone()
    return DataSet(*row) if row else None


def record_data_set(cursor: Any, data_set: DataSet) -> None:
    """Record ``data_set`` as the one in the database (replacing any earlier record)."""
    cursor.execute(
        f"INSERT INTO demo_data_set ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", "))
        + ", recorded_at = now()",
        (
            data_set.seed,
            data_set.as_of,
            data_set.source_sha256,
            data_set.catalogue_sha256,
            data_set.generator_version,
        ),
    )


def forget_data_set(cursor: Any) -> None:
    cursor.execute("DELETE FROM demo_data_set")
