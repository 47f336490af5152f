"""The national month as a Dagster job on the Celery executor (one step per ICB month, then the roll-up).

Why Celery: it is the executor Dagster maintains for spreading one run's steps over many
machines (dagster-celery, with the Kubernetes variant dagster-celery-k8s for clusters),
its workers are plain processes an NHS platform team can run on VMs or in containers, and
its broker (Redis) is one Debian package. dagster-dask was considered: its release for
Dagster 1.13 resolves `distributed` to a 2021 version beside a 2026 `dask`, which does not
hold together; the Kubernetes run launcher needs a cluster that CI here cannot start.

Each ICB month is its own step (a Celery task on whichever worker is free) and its own
partition in the store; the roll-up step waits for all of them. Steps hand each other only
ICB codes (through the run's filesystem IO manager); the data travel through the partition
store, which every worker reaches by the same path or object-storage URL.
"""


import os
from pathlib import Path

import dagster as dg

from pipelines.partitions import MONTHLY

NATIONAL_JOB = "national_month"
ICB_PARTITIONS = dg.DynamicPartitionsDefinition(name="icb")
ICB_MONTH = dg.MultiPartitionsDefinition({"icb": ICB_PARTITIONS, "month": MONTHLY})
ICB_MONTH_ASSET = dg.AssetKey(["national", "icb_month"])
ROLLUP_ASSET = dg.AssetKey(["national", "rollup"])


def broker_url() -> str:
    return os.environ.get("CORE20_CELERY_BROKER", "redis://localhost:6379/0")


def backend_url() -> str:
    return os.environ.get("CORE20_CELERY_BACKEND", broker_url())


class NationalSettings(dg.ConfigurableResource):
    """Where the national month reads and writes; every worker must reach the same paths.

    Attributes:
        extracts_root: folder holding one extracts root per ICB (<root>/<ICB>/YYYY-MM/).
        store_root: the partition store (local folder or object-storage URL).
        scratch_root: local folder for each ICB month's private scratch warehouse.
        warehouse: the national DuckDB file the roll-up writes.
        serving_root: the national serving snapshots (star, Parquet per table and month, Power BI Project; `current` points at the newest).
        reference_dir: shared reference data (default $CORE20_REFERENCE_DIR or ../shared/reference_data).
        icbs: comma-separated ICB ODS codes to run; empty: every ICB with an extract for the month.
        disclosure_profile / primary_imd_vintage: the ICS settings every partition runs with.
        rollup_suppression: how the roll-up protects its areas together (`rollup.SUPPRESSION_METHODS`):
            'linked' (the ICB rows repeat each ICS's own release; the regions and England are
            decided around them), 'joint' (every area decided afresh in one problem, audited in
            scopes of an area or two) or 'top_down'; empty: $CORE20_NATIONAL_ROLLUP_SUPPRESSION,
            else 'linked'.
        rollup_processes: processes the roll-up's audit shares its independent parts between on
            the worker that runs it; 0: $CORE20_ROLLUP_PROCESSES, else every CPU of that worker.
    """

    extracts_root: str = "data/national/extracts"
    store_root: str = "data/national/partitions"
    scratch_root: str = "data/national/scratch"
    warehouse: str = "data/national/warehouse/core20plus5_national.duckdb"
    serving_root: str = "data/national/serving"
    reference_dir: str | None = None
    icbs: str = ""
    disclosure_profile: str = "nhs_suppress_1_7_round_5"
    primary_imd_vintage: str = "IMD2025"
    rollup_suppression: str = ""
    rollup_processes: int = 0

    def settings_kwargs(self) -> dict:
        return {"disclosure_profile": self.disclosure_profile, "primary_imd_vintage": self.primary_imd_vintage}

    def icbs_for(self, month: str) -> list[str]:
        if self.icbs.strip():
            return sorted(code.strip().upper() for code in self.icbs.split(",") if code.strip())
        root = Path(self.extracts_root)
        return sorted(p.name for p in root.iterdir() if (p / month[:7]).is_dir()) if root.is_dir() else []


def _run_partition(context, national: NationalSettings, icb: str, month: str) -> dict:
    from pipelines.national.partition import run_icb_month

    manifest = run_icb_month(icb, month, extracts_root=national.extracts_root, store_root=national.store_root,
                             scratch_root=national.scratch_root, reference_dir=national.reference_dir,
                             settings_kwargs=national.settings_kwargs())
    context.log.info(f"ICB {icb} {month[:7]} committed as run {manifest['run_id']} ({manifest['n_patients']:,} patients)")
    check = manifest.get("national_release_check")
    if check:
        context.log.info(f"ICB {icb} {month[:7]} was checked against the month's national release: {check['n_units_hidden']} "
                         f"more unit(s) hidden over {check['runs']} run(s) of the month, {check['seconds']:.0f} s")
    return manifest


def _metadata(manifest: dict) -> dict:
    # Counts only: the run id, patients run and rows per table; never a row of data.
    return {"run_id": manifest["run_id"], "n_patients": manifest.get("n_patients", 0), "pid": os.getpid(),
            **{f"rows_{name}": n for name, n in manifest["tables"].items() if not name.startswith("_")},
            **{f"national_release_check_{k}": v for k, v in (manifest.get("national_release_check") or {}).items()},
            # The roll-up's: gap-table rows hidden per level (`rollup.hidden_rows`).
            **{f"{level}_{k}": v for level, figures in (manifest.get("hidden_rows") or {}).items()
               for k, v in figures.items() if k != "rows"}}


@dg.op(out=dg.DynamicOut(str))
def national_icbs(context: dg.OpExecutionContext, national: NationalSettings):
    """Fan out: one step per ICB with an extract for the run's month."""
    month = context.partition_key
    icbs = national.icbs_for(month)
    if not icbs:
        raise dg.Failure(f"no ICB extract for {month[:7]} under {national.extracts_root} (expected <ICB>/{month[:7]}/)")
    context.instance.add_dynamic_partitions(ICB_PARTITIONS.name, icbs)
    for icb in icbs:
        yield dg.DynamicOutput(icb, mapping_key=icb)


@dg.op
def icb_month(context: dg.OpExecutionContext, national: NationalSettings, icb: str) -> str:
    """Run one ICB's month in its own scratch warehouse and commit its partition (a Celery task)."""
    month = context.partition_key
    manifest = _run_partition(context, national, icb, month)
    context.log_event(dg.AssetMaterialization(ICB_MONTH_ASSET, partition=dg.MultiPartitionKey({"icb": icb, "month": month}),
                                              metadata=_metadata(manifest)))
    return icb


@dg.op
def national_rollup(context: dg.OpExecutionContext, national: NationalSettings, icbs: list[str]) -> None:
    """Roll the ICB partitions up to regions and England, then build the national warehouse and serving snapshot."""
    from pipelines.national.rollup import publish_national, rollup_month

    month = context.partition_key
    manifest = rollup_month(national.store_root, month, reference_dir=national.reference_dir, icbs=sorted(icbs),
                            suppression=national.rollup_suppression,
                            processes=national.rollup_processes)
    rows = publish_national(national.store_root, month, national.warehouse, national.serving_root,
                            reference_dir=national.reference_dir)
    context.log_event(dg.AssetMaterialization(ROLLUP_ASSET, partition=month,
                                              metadata={**_metadata(manifest), **{f"published_{k}": v for k, v in rows.items()}}))


@dg.graph
def national_month_graph():
    national_rollup(national_icbs().map(icb_month).collect())


def _executor():
    from dagster_celery import celery_executor

    return celery_executor.configured({
        "broker": {"env": "CORE20_CELERY_BROKER"}, "backend": {"env": "CORE20_CELERY_BACKEND"},
        "include": ["pipelines.national.celery_app"],
        "config_source": {"worker_prefetch_multiplier": 1, "task_acks_late": True},
    }, name="core20_celery")


def national_month_job(national: NationalSettings | None = None, executor: bool = True) -> dg.JobDefinition:
    """Return the national month job (Celery executor unless `executor` is False: in-process, for one machine)."""
    return national_month_graph.to_job(
        name=NATIONAL_JOB, partitions_def=MONTHLY,
        executor_def=_executor() if executor else dg.in_process_executor,
        resource_defs={"national": national or NationalSettings(), "io_manager": dg.FilesystemIOManager()},
        description="Every ICB's month as its own step and partition (Celery workers), then the region/England roll-up.",
    )


def national_month_job_from_env() -> dg.JobDefinition:
    """Return the job with its settings from CORE20_NATIONAL_* variables: what a Celery worker reconstructs.

    Workers rebuild the job from this function by name (`dg.reconstructable`), so the run
    and every worker agree on paths without passing them in each task.
    """
    env = {field: os.environ[f"CORE20_NATIONAL_{field.upper()}"] for field in NationalSettings.model_fields
           if f"CORE20_NATIONAL_{field.upper()}" in os.environ}
    return national_month_job(NationalSettings(**env))


@dg.asset(key=ICB_MONTH_ASSET, partitions_def=ICB_MONTH, group_name="national",
          description="One ICB's month in the partition store (private counts + its published rows); re-run to replace exactly that ICB and month.")
def icb_month_asset(context: dg.AssetExecutionContext, national: NationalSettings) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    manifest = _run_partition(context, national, keys["icb"], keys["month"])
    return dg.MaterializeResult(metadata=_metadata(manifest))


def _month_of_icb_months() -> dg.PartitionMapping:
    """The roll-up's month depends on every ICB partition of that month.

    Dagster 1.13 marks this mapping beta and warns at import; the warning is known and
    accepted here, so the UI and every command start without it.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="month")


@dg.asset(key=ROLLUP_ASSET, partitions_def=MONTHLY, group_name="national",
          deps=[dg.AssetDep(ICB_MONTH_ASSET, partition_mapping=_month_of_icb_months())],
          description="Region and England gap tables, SII/RII and data quality rolled up from the month's ICB partitions; national warehouse and serving snapshot.")
def national_rollup_asset(context: dg.AssetExecutionContext, national: NationalSettings) -> dg.MaterializeResult:
    from pipelines.national.rollup import publish_national, rollup_month

    manifest = rollup_month(national.store_root, context.partition_key, reference_dir=national.reference_dir,
                            suppression=national.rollup_suppression,
                            processes=national.rollup_processes)
    rows = publish_national(national.store_root, context.partition_key, national.warehouse, national.serving_root,
                            reference_dir=national.reference_dir)
    return dg.MaterializeResult(metadata={**_metadata(manifest), **{f"published_{k}": v for k, v in rows.items()}})
