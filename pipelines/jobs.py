"""Jobs: the monthly run and the reference-data build.

Both use the in-process executor: DuckDB allows one writer per file, so steps run one after
another in one process (STYLE habit 9) rather than fighting over the lock.
"""

import dagster as dg

from pipelines.publish_journal import failpoint


REFERENCE_JOB = "reference_data"
MONTHLY_JOB = "monthly"

reference_job = dg.define_asset_job(
    REFERENCE_JOB,
    selection=dg.AssetSelection.groups("reference"),
    executor_def=dg.in_process_executor,
    description="Load the pinned reference files into the warehouse `reference` schema (once per reference version).",
)


@dg.success_hook(name="failpoint_after_step")
def failpoint_after_step(context: dg.HookContext) -> None:
    """With CORE20_FAILPOINT=after:<step key>, SIGKILL the run once that step has finished (kill tests only)."""
    failpoint(f"after:{context.step_key}")


monthly_job = dg.define_asset_job(
    MONTHLY_JOB,
    # The national assets (group "national") run from the national job, never inside an ICS month.
    hooks={failpoint_after_step},
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("reference", "national"),
    executor_def=dg.in_process_executor,
    description="Stage the month's extract, attach deprivation, evaluate cohorts and indicators, gate and publish gap tables.",
)
