"""Checks of a generated Power BI Project against the serving snapshot it was written into.

Shared by the unit test (a hand-built warehouse) and the pipeline test (a real month).
Each function returns a list of problems, so a failing assertion shows all of them.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.powerbi import project, tmdl

# What Power BI's Parquet connector gives for each Arrow type, as the TMDL dataType to expect.
ARROW_TO_TMDL = [
    (pa.types.is_boolean, "boolean"), (pa.types.is_integer, "int64"), (pa.types.is_floating, "double"),
    (pa.types.is_decimal, "double"), (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "string"),
    (pa.types.is_date, "dateTime"), (pa.types.is_timestamp, "dateTime"),
]


def definition_of(snapshot: Path) -> Path:
    """Return the semantic model's definition folder inside a snapshot."""
    return snapshot / "powerbi" / f"{project.MODEL}.SemanticModel" / "definition"


def parse_every_file(snapshot: Path) -> tmdl.Model:
    """Parse each .tmdl file on its own, then the model as a whole; return the model."""
    definition = definition_of(snapshot)
    files = sorted(definition.rglob("*.tmdl"))
    assert files, f"no TMDL files under {definition}"
    for path in files:
        tmdl.parse_text(path.read_text(encoding="utf-8"), str(path))
    return tmdl.parse_model(definition)


def parquet_table(snapshot: Path, table: str) -> pa.Table | None:
    """Read every Parquet file of a star table, as the model's M function selects them."""
    files = sorted((snapshot / "parquet" / table).rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


def model_vs_parquet(snapshot: Path, model: tmdl.Model) -> list[str]:
    """Compare each model table and column (name, type, source column) with the Parquet files."""
    problems = []
    folders = {p.name for p in (snapshot / "parquet").iterdir() if p.is_dir()}
    if folders - set(model.tables):
        problems.append(f"Parquet tables missing from the model: {sorted(folders - set(model.tables))}")
    for name, node in model.tables.items():
        data = parquet_table(snapshot, name)
        if data is None:
            problems.append(f"{name}: no Parquet files")
            continue
        columns = model.columns(name)
        if list(columns) != data.schema.names:
            problems.append(f"{name}: model columns {list(columns)} != Parquet columns {data.schema.names}")
        for field in data.schema:
            column = columns.get(field.name)
            if column is None:
                continue
            expected = next((t for check, t in ARROW_TO_TMDL if check(field.type)), f"unloadable {field.type}")
            if column.properties.get("dataType") != expected:
                problems.append(f"{name}.{field.name}: model dataType {column.properties.get('dataType')}, Parquet {field.type}")
            if column.properties.get("sourceColumn") != field.name:
                problems.append(f"{name}.{field.name}: sourceColumn {column.properties.get('sourceColumn')}")
            if not column.description or column.description.strip() == "":
                problems.append(f"{name}.{field.name}: no description")
        if not node.description:
            problems.append(f"{name}: no table description")
        source = node.child("partition")[0].expressions["source"]
        if f'{project.FUNCTION}("{name}")' not in source:
            problems.append(f"{name}: partition does not read its own Parquet folder")
    return problems


def relationships_vs_data(snapshot: Path, model: tmdl.Model) -> list[str]:
    """Check each relationship: many-to-one, single direction, the one side unique, no orphan keys.

    Power BI compares text keys without regard to case (and ignores trailing spaces), so the
    one side must be unique under that comparison, not only byte for byte.
    """
    problems = []
    for rel in model.relationships:
        (many, many_key), (one, one_key) = (tmdl.column_reference(str(rel.properties[s]), rel.name)
                                            for s in ("fromColumn", "toColumn"))
        if (rel.properties.get("fromCardinality"), rel.properties.get("toCardinality")) != ("many", "one"):
            problems.append(f"{many}.{many_key} -> {one}: not many-to-one")
        if rel.properties.get("crossFilteringBehavior") != "oneDirection":
            problems.append(f"{many}.{many_key} -> {one}: not single direction")
        if many_key != one_key:
            problems.append(f"{many}.{many_key} -> {one}.{one_key}: joins columns of different names")
        facts, dims = parquet_table(snapshot, many), parquet_table(snapshot, one)
        keys = dims.column(one_key).to_pylist()
        folded = [str(k).strip().casefold() for k in keys if k is not None]
        if None in keys or len(set(folded)) != len(folded):
            problems.append(f"{one}.{one_key}: the one side has nulls or duplicate keys (case-insensitive)")
        present = {str(k).strip().casefold() for k in folded}
        orphans = {k for k in facts.column(many_key).to_pylist() if k is not None and str(k).strip().casefold() not in present}
        if orphans:
            problems.append(f"{many}.{many_key}: {len(orphans)} keys not in {one}, e.g. {sorted(map(str, orphans))[:3]}")
    return problems
