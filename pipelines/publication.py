"""Write-audit-publish: a month's published tables change together, and only after every gate passed.

Each published table is first built as a candidate in the `audit` schema, by an asset
keyed `["audit", name]` that carries a blocking asset check (its gate). The single publish
step (`assets/publish.py`) depends on all of them; Dagster skips it when any gate upstream
blocks, and it also refuses by itself unless every registered candidate passed a blocking
gate in the same run. It then copies the month's rows of every candidate into
`published.<name>` inside ONE DuckDB transaction: a blocked or failed run leaves every
published table exactly as it was, and a good run changes all of them at once.

Adding a published table is one line in `PUBLISHED_TABLES` below, given an asset
`["audit", "<name>"]` with `metadata={"partition_expr": "reporting_month"}` (MONTH_META),
a `reporting_month` column, and at least one blocking check, e.g.::

    PublishedTable("definition_attrition"),

`tests/unit/test_publication.py` fails when a registered candidate has no blocking gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterable

from pipelines.segmentation.schemas import DATA_QUALITY, PUBLISHED_DATA_QUALITY

AUDIT, PUBLISHED = "audit", "published"


@dataclass(frozen=True)
class PublishedTable:
    """One published table of a month.

    Attributes:
        name: the table name in both `audit` (candidate) and `published`.
        partition_column: the month column; None would replace the whole table.
        audit_asset: whether `audit.<name>` is built by an asset with its own gate. The data-quality
            history is not: the gates themselves write it, for blocked months too.
        exclude: candidate columns kept out of the published table (e.g. which run wrote a row,
            so that re-running a month publishes identical rows).
    """

    name: str
    partition_column: str | None = "reporting_month"
    audit_asset: bool = True
    exclude: tuple[str, ...] = ()


PUBLISHED_TABLES: tuple[PublishedTable, ...] = (
    PublishedTable("gap_table"),
    PublishedTable("indicator_catalogue"),
    PublishedTable("inequality_table"),
    PublishedTable("spc_series"),
    PublishedTable("deprivation_quality"),
    PublishedTable("data_quality", audit_asset=False,
                   exclude=tuple(c for c in DATA_QUALITY.names if c not in PUBLISHED_DATA_QUALITY.names)),
)


def audit_key(table: PublishedTable):
    """Return the asset key of a table's candidate, e.g. audit/gap_table."""
    import dagster as dg

    return dg.AssetKey([AUDIT, table.name])


def published_key(table: PublishedTable):
    """Return the asset key of a published table, e.g. published/gap_table."""
    import dagster as dg

    return dg.AssetKey([PUBLISHED, table.name])


def ungated(check_evaluations: Iterable, tables: Iterable[PublishedTable] = PUBLISHED_TABLES) -> list[str]:
    """Return why the month may not be published, from the run's asset-check evaluations (empty: it may).

    A registered candidate must have passed at least one blocking check in this run, and no
    blocking check of the run may have failed.

    Arguments:
        check_evaluations: the run's `AssetCheckEvaluation`s.
        tables: the registry.
    """
    evaluations = list(check_evaluations)
    reasons = [
        f"gate {e.asset_key.to_user_string()}:{e.check_name} failed"
        for e in evaluations
        if e.blocking and not e.passed and str(getattr(e.severity, "value", e.severity)) == "ERROR"
    ]
    passed = {e.asset_key for e in evaluations if e.blocking and e.passed}
    for table in tables:
        if table.audit_asset and audit_key(table) not in passed:
            reasons.append(
                f"{audit_key(table).to_user_string()} has no passing blocking gate in this run (materialise it, "
                "with its checks, in the same run as the publish step)"
            )
    return reasons


def publish(warehouse, reporting_month: date, tables: Iterable[PublishedTable] = PUBLISHED_TABLES) -> dict[str, int]:
    """Copy the month's candidate rows of every table into `published`, in one transaction.

    Arguments:
        warehouse: the `Warehouse` resource (or its file).
        reporting_month: the month.
        tables: the registry.

    Returns:
        published table -> rows published for the month.
    """
    from pipelines.warehouse import as_warehouse, copy_partitions, table_exists

    tables = list(tables)
    with as_warehouse(warehouse).connect() as con:
        missing = [t.name for t in tables if not table_exists(con, AUDIT, t.name)]
        if missing:
            raise ValueError(f"nothing published: the candidate table(s) {[f'{AUDIT}.{m}' for m in missing]} do not exist")
        return copy_partitions(
            con, [((AUDIT, t.name), (PUBLISHED, t.name), t.partition_column) for t in tables], reporting_month,
            exclude={f"{PUBLISHED}.{t.name}": t.exclude for t in tables if t.exclude},
        )
