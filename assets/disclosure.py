"""The disclosure audit gate: the whole month's outputs checked before anything is published.

It runs after every candidate table passed its own gate and before the publish transaction:
it builds the month's serving snapshot and report as candidates in private building
locations (pipelines/serving.py), then checks every surface a reader will get (the candidate
tables, the snapshot's Parquet and DuckDB files, the report, the run summary and `core20
quality`) against the disclosure profile (pipelines/disclosure_audit.py). A breach blocks
publication and names the surface and the rule, never a value; the candidates are then
discarded, so the published tables, the serving snapshot and the reports stay exactly as
they were.
"""

import time

import dagster as dg

from assets.cohorts import month_of
from pipelines import quality
from pipelines.partitions import MONTHLY
from pipelines.publication import PUBLISHED_TABLES, audit_key
from pipelines.resources import ReferenceData, ServingOutputs, Warehouse

DISCLOSURE = dg.AssetKey(["audit", "disclosure"])
CHECK = "disclosure_rules"


@dg.asset(
    key=DISCLOSURE, partitions_def=MONTHLY, group_name="publish",
    deps=[audit_key(t) for t in PUBLISHED_TABLES if t.audit_asset],
    check_specs=[dg.AssetCheckSpec(CHECK, asset=DISCLOSURE, blocking=True,
                                   description="No surface of the month's outputs breaks the disclosure profile's rules.")],
    description="The month's candidate serving snapshot and report, built privately and audited with every candidate table.",
)
def disclosure_audit(context: dg.AssetExecutionContext, warehouse: Warehouse, serving: ServingOutputs,
                     reference_data: ReferenceData):
    from pipelines.disclosure_audit import audit_candidates
    from pipelines.serving import build_candidates, discard_candidates, sweep_leftovers

    month = month_of(context)
    # The run holds the warehouse's writer lock, so no other run builds in its folders: what
    # is there unfinished was left by a killed run (issue 15: .building folders outlived recovery).
    removed = sweep_leftovers(serving.serving_path(), serving.reports_path())
    if removed:
        context.log.info(f"removed {len(removed)} unfinished build(s) or temporary file(s) a stopped run left")
    started = time.perf_counter()
    built = build_candidates(warehouse, serving.serving_path(), serving.reports_path(), reference_data.path(), month,
                             powerbi_parquet_folder=serving.powerbi_folder())
    build_seconds = time.perf_counter() - started
    audit_started = time.perf_counter()
    violations, read = audit_candidates(warehouse.file(), month, built["snapshot"], built["report"])
    audit_seconds = time.perf_counter() - audit_started
    if violations:
        discard_candidates(serving.serving_path(), serving.reports_path(), month)
    yield dg.MaterializeResult(metadata={"candidate_build_seconds": round(build_seconds, 3),
                                         "audit_seconds": round(audit_seconds, 3), "n_violations": len(violations),
                                         "disclosure_profile": read["profile"]})
    rows = [quality.QualityRow("disclosure_rule", v.rule, v.surface, False, v.n) for v in violations]
    summary = ("every surface of the month's outputs keeps to the disclosure profile "
               f"({read['profile']}; audit {audit_seconds:.1f} s)") if not violations else (
        "publication refused: " + "; ".join(str(v) for v in violations[:12]) +
        (f"; and {len(violations) - 12} more" if len(violations) > 12 else ""))
    outcome = quality.CheckOutcome(not violations, summary, rows or [quality.QualityRow("disclosure_rule", "all_rules", None, True, 0)],
                                   seconds=audit_seconds)
    yield quality.check_result(context, warehouse.file(), DISCLOSURE, CHECK, outcome)
