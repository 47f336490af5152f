"""Resources: where the warehouse, the reference data and the extracts are, and run settings.

Every path has a default that works from a fresh clone. The ICS's settings file
(core20.toml) overrides the default, an environment variable overrides the file, and a
flag or Dagster run config overrides both (pipelines/settings_file.py; all read when the
run starts, never at import time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import dagster as dg

from pipelines import settings_file
from pipelines.segmentation.extract import SUFFIXES, ExtractError
from pipelines.warehouse import DEFAULT_WAREHOUSE, REPO_ROOT, WAREHOUSE_ENV, Warehouse, resolve_warehouse_path

__all__ = ["DEFAULT_WAREHOUSE", "WAREHOUSE_ENV", "Warehouse", "resolve_warehouse_path", "ReferenceData", "ExtractSource",
           "PipelineSettings", "ServingOutputs"]
DEFAULT_EXTRACTS = REPO_ROOT / "data" / "extracts"
EXTRACTS_ENV = "CORE20_EXTRACTS"
DEFINITIONS_ENV = "CORE20_DEFINITIONS"


class ReferenceData(dg.ConfigurableResource):
    """The shared reference directory (IMD, lookups, boundaries, codelists), checked by sha256."""

    directory: Optional[str] = None

    def path(self) -> Path:
        """Return the resolved reference directory (argument, $CORE20_REFERENCE_DIR, default)."""
        from reference_data.loader import resolve_reference_dir

        return resolve_reference_dir(self.directory)


class ExtractSource(dg.ConfigurableResource):
    """Where monthly extracts arrive: `root/YYYY-MM/` folders, or one extract folder itself."""

    root: Optional[str] = None
    column_mapping: Optional[str] = None

    def root_path(self) -> Path:
        """Return the extracts root (argument, $CORE20_EXTRACTS, core20.toml, default data/extracts)."""
        return settings_file.path_value("extracts", self.root, DEFAULT_EXTRACTS)

    def folder_for(self, month_key: str) -> Path:
        """Return the extract folder for a partition key such as '2026-10-01'."""
        root = self.root_path()
        if any((root / f"patients{suffix}").exists() for suffix in SUFFIXES):
            return root
        folder = root / month_key[:7]
        if not folder.is_dir():
            raise ExtractError(
                f"no extract for {month_key[:7]}: expected a folder {folder} holding patients and events files."
            )
        return folder

    def mapping_path(self) -> Path | None:
        """Return the configured column-mapping file, if any (else the folder's own is used)."""
        return settings_file.path_value("column_mapping", self.column_mapping)

    def months_available(self) -> list[str]:
        """Return the YYYY-MM folders under the root that hold a patients file, oldest first."""
        root = self.root_path()
        if not root.is_dir():
            return []
        return sorted(
            p.name
            for p in root.iterdir()
            if p.is_dir() and len(p.name) == 7 and any((p / f"patients{s}").exists() for s in SUFFIXES)
        )


class PipelineSettings(dg.ConfigurableResource):
    """ICS choices that change figures, recorded with the outputs they produce.

    Attributes:
        primary_imd_vintage: the IMD vintage Core20 is flagged on (both are always attached).
        disclosure_profile: the disclosure-control profile applied to published counts.
        min_decile_match_rate: block the run when fewer than this share of patients with a
            valid English postcode get a decile (a data problem, not a deprived population).
        practice_fallback: substitute the practice's LSOA for unmatched patients (a different
            statistic; off by default and flagged per row when on).
        min_practice_address_rate: block the run when a practice (of at least
            `min_practice_patients`) has a usable postcode or LSOA for fewer than this share
            of its patients; 0 switches the check off.
        min_practice_patients: practices smaller than this are not judged by that check.
        sii_repetitions: simulated draws for SII/RII confidence limits (PHE default 100,000).
        reliability_threshold: a published rate resting on a rounded count under this (the
            denominator of a proportion, the numerator of a rate) is flagged is_low_reliability
            (default 50: rounding to 5 moves a count by up to 2, 4% of 50; see gaps.RELIABILITY_THRESHOLD).
        sii_seed: base seed of those draws; each index's own seed is derived from it and recorded.
        sii_transform: fit the SII on the logit (proportion) or log (rate) scale and back-transform
            (PHE `transform`); standard errors and draws are on that scale either way. Off by
            default, as in PHEindicatormethods.
        spc_run_length: points on one side of the mean that make an SPC shift (Making Data Count: 7).
        spc_trend_length: points each higher (lower) than the last that make an SPC trend (MDC: 7).
        spc_screen_outliers: leave moving ranges of 3.267 x their mean out of the XmR limits.
        spc_two_in_three: apply the two-of-three-close-to-a-limit rule.
        spc_min_points: points an SPC series needs before it gets a variation or assurance
            verdict (NHSRplotthedots' short-series threshold, 12; at least 2).
        spc_window_policy: "non_overlapping" (chart a rolling W-month indicator every W-th
            month and a campaign measure at the same month of each campaign) or
            "monthly_with_caveat" (chart every month and say what the overlap does).
        max_quarantine_share: block the run when more than this share of an input table's rows
            fail a row rule and are quarantined (a few bad rows are set aside; many mean the
            extract itself is wrong).
        definitions_dir: the folder of register, cohort, indicator and ICS definitions
            (default $CORE20_DEFINITIONS, else the shipped reference_data/definitions).
    """

    primary_imd_vintage: str = "IMD2025"
    disclosure_profile: str = "nhs_suppress_1_7_round_5"
    min_decile_match_rate: float = 0.95
    practice_fallback: bool = False
    min_practice_address_rate: float = 0.5
    min_practice_patients: int = 50
    sii_repetitions: int = 100000
    reliability_threshold: int = 50
    sii_seed: int = 20260
    sii_transform: bool = False
    spc_run_length: int = 7
    spc_trend_length: int = 7
    spc_screen_outliers: bool = True
    spc_two_in_three: bool = True
    spc_min_points: int = 12
    spc_window_policy: str = "non_overlapping"
    max_quarantine_share: float = 0.01
    definitions_dir: Optional[str] = None

    def spc_rules(self):
        """Return the SPC rule conventions these settings choose (checked)."""
        from pipelines.segmentation.spc import SpcRules

        return SpcRules(self.spc_run_length, self.spc_trend_length, self.spc_screen_outliers,
                        self.spc_two_in_three, self.spc_min_points).check()

    def definitions_path(self) -> Path | None:
        """Return the definitions folder (setting, $CORE20_DEFINITIONS, core20.toml), or None for the shipped one."""
        return settings_file.path_value("definitions", self.definitions_dir)


SERVING_ENV = "CORE20_SERVING"
REPORTS_ENV = "CORE20_REPORTS"
POWERBI_PARQUET_ENV = "CORE20_POWERBI_PARQUET_FOLDER"
DEFAULT_SERVING = REPO_ROOT / "data" / "serving"
DEFAULT_REPORTS = REPO_ROOT / "data" / "reports"


class ServingOutputs(dg.ConfigurableResource):
    """Where BI reads from and where the monthly reports go (never the warehouse itself).

    Each folder belongs to one warehouse: unless set, it sits beside it (settings_file), so
    a run on another warehouse never writes into the production snapshot or reports.

    Attributes:
        serving_root: folder of serving snapshots; BI tools read `serving_root/current/`
            (default $CORE20_SERVING, else core20.toml, else beside the warehouse: data/serving).
        reports_dir: folder of the monthly HTML reports (default $CORE20_REPORTS, else
            core20.toml, else beside the warehouse: data/reports).
        restricted_dir: owner-only folder for row-level exports that must never be served
            (default $CORE20_RESTRICTED, else core20.toml, else beside the warehouse: data/restricted).
        warehouse: the warehouse these outputs belong to, as it was given (None: the one in force).
        keep_snapshots: snapshots kept, so a refresh that began before a swap can finish.
        powerbi_parquet_folder: the serving Parquet folder as Power BI Desktop and the gateway
            see it, e.g. `\\\\analytics-server\\core20\\serving\\current\\parquet`: the default of
            the generated model's ParquetFolder parameter (default $CORE20_POWERBI_PARQUET_FOLDER,
            else core20.toml, else `serving_root/current/parquet` as this machine sees it).
    """

    serving_root: Optional[str] = None
    reports_dir: Optional[str] = None
    restricted_dir: Optional[str] = None
    warehouse: Optional[str] = None
    keep_snapshots: int = 3
    powerbi_parquet_folder: Optional[str] = None

    def powerbi_folder(self) -> str | None:
        """Return the ParquetFolder default for the Power BI model, if one is configured."""
        return settings_file.resolve("paths.powerbi_parquet_folder", self.powerbi_parquet_folder)[0]

    def serving_path(self) -> Path:
        """Return the resolved serving folder."""
        return settings_file.output_path("serving", self.serving_root, self.warehouse)

    def reports_path(self) -> Path:
        """Return the resolved reports folder."""
        return settings_file.output_path("reports", self.reports_dir, self.warehouse)

    def restricted_path(self) -> Path:
        """Return the resolved restricted folder (created by whoever writes into it, owner-only)."""
        return settings_file.output_path("restricted", self.restricted_dir, self.warehouse)
