"""Table contracts: every table the pipeline reads or writes, declared once.

Casting of supplier extracts, the input checks, the DuckDB table layout and the data
dictionary all derive from these declarations, so a column's name, type and meaning are
written in exactly one place (the ehrQL habit: the *what* lives apart from the *how*).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl


@dataclass(frozen=True)
class Column:
    """One column of a table contract.

    Arguments:
        name: the column's name in the pipeline (suppliers' headers are mapped onto it).
        dtype: the polars type the column is cast to.
        description: what the column means, for the data dictionary.
        required: whether an input must supply it (outputs: always written).
        nullable: whether a null is an allowed value.
        allowed: the closed set of allowed values, when there is one.
    """

    name: str
    dtype: pl.DataType
    description: str
    required: bool = True
    nullable: bool = False
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Table:
    """A table contract: a named, ordered set of columns."""

    name: str
    description: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        """Return the column names in contract order."""
        return [c.name for c in self.columns]

    @property
    def schema(self) -> dict[str, pl.DataType]:
        """Return the polars schema (name -> dtype) in contract order."""
        return {c.name: c.dtype for c in self.columns}

    def column(self, name: str) -> Column:
        """Return the column called `name`, or raise KeyError naming the table."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    def empty(self) -> pl.DataFrame:
        """Return a zero-row frame with exactly this contract's schema."""
        return pl.DataFrame(schema=self.schema)


# Sex as recorded in GP systems (GP2GP / NHS Data Dictionary person stated gender):
# M male, F female, I indeterminate, U unknown/not recorded.
SEX_CODES = ("M", "F", "I", "U")

# ---------------------------------------------------------------------------
# Input contract: one folder per monthly extract holding `patients` and `events`
# (CSV or Parquet). Suppliers map their own headers onto these names with a
# column-mapping file (see pipelines/segmentation/extract.py).
# ---------------------------------------------------------------------------

INPUT_PATIENTS = Table(
    name="patients",
    description=(
        "One row per patient on the practice register extract. Either date_of_birth, or "
        "year_of_birth with month_of_birth, must be supplied; either postcode or lsoa_code."
    ),
    columns=(
        Column("patient_id", pl.String, "Pseudonymised patient identifier, stable across months."),
        Column("practice_code", pl.String, "ODS code of the registered GP practice (e.g. C84001)."),
        Column(
            "postcode",
            pl.String,
            "Patient's home postcode in any common format; may be blank.",
            required=False,
            nullable=True,
        ),
        Column(
            "lsoa_code",
            pl.String,
            "LSOA code of the home address, when the supplier gives it instead of a postcode; "
            "its vintage (2011 or 2021) is stated in the column mapping.",
            required=False,
            nullable=True,
        ),
        Column("date_of_birth", pl.Date, "Date of birth.", required=False, nullable=True),
        Column("year_of_birth", pl.Int32, "Year of birth (when no full date is supplied).", required=False, nullable=True),
        Column("month_of_birth", pl.Int32, "Month of birth 1-12 (with year_of_birth).", required=False, nullable=True),
        Column("sex", pl.String, "Sex: M, F, I (indeterminate) or U (unknown).", allowed=SEX_CODES),
        Column("registration_start_date", pl.Date, "Date the current registration started."),
        Column(
            "registration_end_date",
            pl.Date,
            "Date the registration ended; blank while still registered.",
            required=True,
            nullable=True,
        ),
    ),
    primary_key=("patient_id",),
)

INPUT_EVENTS = Table(
    name="events",
    description=(
        "Coded clinical events and medication issues. Blood pressure is two events on the same "
        "date: a systolic and a diastolic observable, each with its value."
    ),
    columns=(
        Column("patient_id", pl.String, "Pseudonymised patient identifier (as in patients)."),
        Column("code", pl.String, "SNOMED CT concept id or dm+d product id (6-18 digits)."),
        Column("event_date", pl.Date, "Date the event was recorded or the item issued."),
        Column("value", pl.Float64, "Numeric value when the code carries one (e.g. mmHg).", required=False, nullable=True),
    ),
)

INPUT_TABLES = {t.name: t for t in (INPUT_PATIENTS, INPUT_EVENTS)}

# ---------------------------------------------------------------------------
# Staging (private layer: patient-level, never published).
# ---------------------------------------------------------------------------

POSTCODE_STATUSES = ("valid", "blank", "invalid")

STAGING_PATIENTS = Table(
    name="staging.patients",
    description="Patients registered at the end of the reporting month, cast to the contract.",
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month (the partition)."),
        Column("patient_id", pl.String, "Pseudonymised patient identifier."),
        Column("practice_code", pl.String, "ODS code of the registered practice, upper case."),
        Column("postcode", pl.String, "Postcode in canonical form ('NG7 2UH'); null unless valid.", nullable=True),
        Column("postcode_status", pl.String, "Whether the supplied postcode was valid, blank or invalid.", allowed=POSTCODE_STATUSES),
        Column("lsoa_code_supplied", pl.String, "LSOA code supplied in the extract, if any.", nullable=True),
        Column("date_of_birth", pl.Date, "Date of birth (mid-month when only year and month are known).", nullable=True),
        Column("age", pl.Int32, "Age in whole years at the end of the reporting month.", nullable=True),
        Column("sex", pl.String, "Sex: M, F, I or U.", allowed=SEX_CODES),
        Column("registration_start_date", pl.Date, "Date the registration started."),
        Column("registration_end_date", pl.Date, "Date the registration ended, if it has.", nullable=True),
    ),
    primary_key=("reporting_month", "patient_id"),
)

STAGING_EVENTS = Table(
    name="staging.events",
    description="Coded events of registered patients dated on or before the end of the reporting month.",
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month (the partition)."),
        Column("patient_id", pl.String, "Pseudonymised patient identifier."),
        Column("code", pl.String, "SNOMED CT / dm+d concept id."),
        Column("event_date", pl.Date, "Date of the event."),
        Column("value", pl.Float64, "Numeric value, if any.", nullable=True),
    ),
)

# ---------------------------------------------------------------------------
# Deprivation (private layer): one row per registered patient.
# ---------------------------------------------------------------------------

IMD_VINTAGES = ("IMD2019", "IMD2025")

# How a patient's LSOA (and so decile) was obtained; DOMAIN.md section 2 requires it per row.
MATCH_METHODS = (
    "postcode_lookup",  # exact ONS postcode -> LSOA lookup (live or terminated postcode)
    "spatial",  # postcode centroid placed in LSOA 2021 polygons (split/complex LSOAs, new postcodes)
    "lsoa_supplied",  # the extract supplied an LSOA code of this vintage (or bridged one-to-one)
    "practice_fallback",  # practice's LSOA substituted (off by default; a different statistic)
    "outside_england",  # Welsh, Scottish, NI or Crown-dependency postcode: IMD does not apply
    "invalid_postcode",  # not the shape of a UK postcode
    "blank",  # no postcode and no LSOA supplied
    "unmatched",  # valid shape but found in no lookup
)

PATIENT_DEPRIVATION = Table(
    name="population.patient_deprivation",
    description="National IMD deciles for both vintages, with how each was obtained, per patient.",
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month."),
        Column("patient_id", pl.String, "Pseudonymised patient identifier."),
        Column("lsoa11_code", pl.String, "LSOA 2011 of the home address.", nullable=True),
        Column("lsoa21_code", pl.String, "LSOA 2021 of the home address.", nullable=True),
        Column("imd2019_decile", pl.Int8, "National IMD 2019 decile (1 = most deprived 10%).", nullable=True),
        Column("imd2019_method", pl.String, "How the IMD 2019 decile was obtained.", allowed=MATCH_METHODS),
        Column("imd2025_decile", pl.Int8, "National IoD 2025 IMD decile (1 = most deprived 10%).", nullable=True),
        Column("imd2025_method", pl.String, "How the IoD 2025 decile was obtained.", allowed=MATCH_METHODS),
        Column("imd2025_is_certain", pl.Boolean, "Whether the 2025 decile is the same whichever candidate 2021 LSOA is right.", nullable=True),
        Column("imd2025_core20_is_certain", pl.Boolean, "Whether 2025 Core20 status is the same whichever candidate 2021 LSOA is right (true more often than imd2025_is_certain).", nullable=True),
        Column("imd2019_quintile", pl.Int8, "National IMD 2019 quintile, ceil(decile / 2) (1 = most deprived 20%).", nullable=True),
        Column("imd2019_is_core20", pl.Boolean, "IMD 2019 national decile 1-2; null when there is no decile.", nullable=True),
        Column("imd2025_quintile", pl.Int8, "National IoD 2025 IMD quintile, ceil(decile / 2).", nullable=True),
        Column("imd2025_is_core20", pl.Boolean, "IoD 2025 national decile 1-2; null when there is no decile.", nullable=True),
        Column("sicbl_code", pl.String, "Sub-ICB location (ODS) of the home LSOA.", nullable=True),
        Column("icb_code", pl.String, "ICB (ODS) of the home LSOA.", nullable=True),
        Column("lad_code", pl.String, "Local authority district of the home LSOA.", nullable=True),
    ),
    primary_key=("reporting_month", "patient_id"),
)

DEPRIVATION_QUALITY = Table(
    name="published.deprivation_quality",
    description=(
        "Postcode -> LSOA -> IMD data quality per reporting month x IMD vintage x practice ('ALL' = the "
        "whole extract). Exact in population.deprivation_quality; counts disclosure-controlled in published."
    ),
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month."),
        Column("imd_vintage", pl.String, "IMD vintage the figures are for.", allowed=IMD_VINTAGES),
        Column("practice_code", pl.String, "ODS code of the registered practice, or 'ALL' for the whole extract."),
        Column("n_patients", pl.Int64, "Registered patients.", nullable=True),
        Column("n_matched", pl.Int64, "Patients with an address (not blank, not outside England) who got a national decile.", nullable=True),
        *(
            Column(f"n_{method}", pl.Int64, f"Patients whose decile route ended in '{method}'.", nullable=True)
            for method in MATCH_METHODS
        ),
        Column("match_rate", pl.Float64, "n_matched / patients with an address (all but blank and outside England); gated.", nullable=True),
        Column("address_rate", pl.Float64, "Share of patients with a usable postcode or LSOA (not blank, not invalid); gated per practice.", nullable=True),
        Column("share_blank", pl.Float64, "Share of patients with no postcode and no LSOA.", nullable=True),
        Column("share_invalid_postcode", pl.Float64, "Share of patients whose postcode is not the shape of a UK postcode.", nullable=True),
        Column("share_outside_england", pl.Float64, "Share of patients living outside England (no IMD applies; not a data failure).", nullable=True),
    ),
    primary_key=("reporting_month", "imd_vintage", "practice_code"),
)

# ---------------------------------------------------------------------------
# Published (aggregate only): the gap table.
# ---------------------------------------------------------------------------

GAP_TABLE = Table(
    name="published.gap_table",
    description=(
        "Long format: one row per reporting month x indicator x IMD vintage x breakdown x group. "
        "Counts have had the disclosure profile applied before any rate, interval or gap was computed."
    ),
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month."),
        Column("indicator_id", pl.String, "Indicator identifier (see the indicator definitions)."),
        Column("indicator_version", pl.Int32, "Version of the indicator definition that produced the row."),
        Column("clinical_area", pl.String, "Core20PLUS5 clinical area."),
        Column("direction", pl.String, "Whether a higher or lower rate is better.", allowed=("higher_is_better", "lower_is_better")),
        Column("value_type", pl.String, "'proportion' of persons (Wilson limits, stored as a proportion, shown as a "
               "percentage) or 'rate' of events per population (Byar limits, exact Poisson under 10; stored per multiplier).",
               allowed=("proportion", "rate")),
        Column("multiplier", pl.Int64, "Scale of rate, its limits and gap: 1 for a proportion (x 100 for a percentage), "
               "e.g. 100000 for a rate per 100,000."),
        Column("imd_vintage", pl.String, "IMD vintage used for deprivation groups.", allowed=IMD_VINTAGES),
        Column("breakdown", pl.String, "Dimension the rows are grouped by (e.g. imd_quintile, core20)."),
        Column("group", pl.String, "Group within the breakdown (e.g. '1', 'core20', 'rest', 'unknown')."),
        Column("numerator", pl.Int64, "Patients meeting the numerator after disclosure control; null when suppressed.", nullable=True),
        Column("denominator", pl.Int64, "Patients in the denominator after disclosure control; null when suppressed.", nullable=True),
        Column("rate", pl.Float64, "numerator / denominator x multiplier.", nullable=True),
        Column("rate_lower", pl.Float64, "Lower 95% limit: Wilson score (proportions); Byar, exact Poisson under 10 (rates).", nullable=True),
        Column("rate_upper", pl.Float64, "Upper 95% limit: Wilson score (proportions); Byar, exact Poisson under 10 (rates).", nullable=True),
        Column("reference_group", pl.String, "Group the gap is measured against.", nullable=True),
        Column("gap", pl.Float64, "Absolute gap: rate minus the reference group's rate, on the rate's scale.", nullable=True),
        Column("gap_lower", pl.Float64, "Lower 95% limit of the gap (Newcombe hybrid score for proportions; MOVER from "
               "the two Byar/exact intervals for rates).", nullable=True),
        Column("gap_upper", pl.Float64, "Upper 95% limit of the gap (as gap_lower).", nullable=True),
        Column("rate_ratio", pl.Float64, "rate / reference rate.", nullable=True),
        Column("comparison", pl.String, "Direction-aware: worse, better, similar than the reference, or not compared.", nullable=True),
        Column(
            "comparison_method",
            pl.String,
            "How the gap was tested: 'newcombe' (difference from the reference group, Newcombe hybrid score) or "
            "'benchmark' (areas: the group's Wilson interval against the overall rate as a fixed benchmark, as Fingertips "
            "compares areas); 'mover' for rates (the difference's limits from both rates' Byar/exact limits, Zou and "
            "Donner's method of variance estimates recovery, of which Newcombe's is the proportion case); null when not compared.",
            nullable=True,
            allowed=("newcombe", "mover", "benchmark"),
        ),
        Column("is_suppressed", pl.Boolean, "Whether disclosure control suppressed this row's counts."),
        Column("is_low_reliability", pl.Boolean, "The rate comes from counts rounded by the profile and rests on a count "
               "under the reliability threshold (the denominator of a proportion, the numerator of a rate): read it as an "
               "approximate range, not an exact point (8/10 publishes as 10/10)."),
        Column("disclosure_profile", pl.String, "Disclosure-control profile applied."),
    ),
    primary_key=("reporting_month", "indicator_id", "imd_vintage", "breakdown", "group"),
)

INDICATOR_CATALOGUE = Table(
    name="published.indicator_catalogue",
    description=(
        "One row per reporting month x indicator: the definition version and hash that produced the month's figures, "
        "which way is better, the target, how the rate is scaled, and whether the indicator could be computed "
        "(a missing codelist or feed is reported here, never as a zero rate)."
    ),
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month."),
        Column("indicator_id", pl.String, "Indicator identifier (see the indicator definitions)."),
        Column("indicator_version", pl.Int32, "Version of the indicator definition used this month."),
        Column("title", pl.String, "What the indicator measures, in words."),
        Column("clinical_area", pl.String, "Core20PLUS5 clinical area."),
        Column("direction", pl.String, "Whether a higher or lower rate is better; sets the sign of every gap.",
               allowed=("higher_is_better", "lower_is_better")),
        Column("target", pl.Float64, "National or local aim as a proportion (e.g. 0.6), when there is one.", nullable=True),
        Column("unavailable_components", pl.List(pl.String),
               "Parts of the published definition no shared codelist covers, as 'component: reason' (in the star: "
               "joined with '; ', empty when none)."),
        Column("definition_hash", pl.String, "sha256 of the canonical text of the indicator and every register and cohort it uses."),
        Column("is_available", pl.Boolean, "Whether the indicator could be computed this month (its codelists and feeds were present)."),
        Column("not_available_reason", pl.String, "Why not, when it could not (a missing codelist or an absent feed).", nullable=True),
        Column("value_type", pl.String, "'proportion' of persons (Wilson limits; shown as a percentage) or 'rate' of events "
               "per population (Byar limits, exact Poisson under 10; shown per multiplier).", allowed=("proportion", "rate")),
        Column("multiplier", pl.Int64, "How the rate is stored and shown: 1 = a proportion (shown as a percentage), "
               "100000 = per 100,000."),
        Column("requires_feeds", pl.List(pl.String),
               "Optional linked feeds the indicator needs (in the star: joined with '; ', empty when it needs none)."),
        Column("codelists", pl.List(pl.String),
               "Codelists the indicator and its registers and cohorts use (in the star: joined with '; ')."),
        Column("denominator_rule", pl.String, "The denominator rule in words.", nullable=True),
        Column("numerator_rule", pl.String, "The numerator rule in words.", nullable=True),
    ),
    primary_key=("reporting_month", "indicator_id"),
)

POINT_TYPES = (
    "common_cause", "special_cause_improvement", "special_cause_concern", "special_cause_neutral_high",
    "special_cause_neutral_low",
)
SPC_SERIES_BASES = (
    "monthly", "every_window", "same_month_each_campaign", "monthly_overlapping", "monthly_campaign",
    "monthly_cumulative", "unplanned",
)

INEQUALITY_TABLE = Table(
    name="published.inequality_table",
    description=(
        "Slope and relative index of inequality (PHE method, PHEindicatormethods::phe_sii) per reporting month x "
        "indicator x IMD vintage x quantile type, from the published (disclosure-controlled) decile or quintile rows."
    ),
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month."),
        Column("indicator_id", pl.String, "Indicator identifier."),
        Column("indicator_version", pl.Int32, "Version of the indicator definition."),
        Column("clinical_area", pl.String, "Core20PLUS5 clinical area."),
        Column("direction", pl.String, "Whether a higher or lower rate is better.", allowed=("higher_is_better", "lower_is_better")),
        Column("imd_vintage", pl.String, "IMD vintage of the quantiles.", allowed=IMD_VINTAGES),
        Column("quantile_type", pl.String, "imd_decile or imd_quintile (1 = most deprived).", allowed=("imd_decile", "imd_quintile")),
        Column("n_quantiles", pl.Int32, "Quantiles with a published rate (all are needed for an index)."),
        Column("population", pl.Int64, "Sum of the quantiles' published denominators.", nullable=True),
        Column("sii", pl.Float64, "Slope index of inequality: fitted rate at the least deprived end minus the most deprived end.", nullable=True),
        Column("sii_lower", pl.Float64, "Lower simulated confidence limit of the SII.", nullable=True),
        Column("sii_upper", pl.Float64, "Upper simulated confidence limit of the SII.", nullable=True),
        Column("rii", pl.Float64, "Relative index of inequality: fitted rate at the least deprived end / most deprived end.", nullable=True),
        Column("rii_lower", pl.Float64, "Lower simulated confidence limit of the RII.", nullable=True),
        Column("rii_upper", pl.Float64, "Upper simulated confidence limit of the RII.", nullable=True),
        Column("value_type", pl.String, "Indicator type passed to the method: it fixes the analysis scale of the standard "
               "errors and draws (normal: identity, rate: log, proportion: logit).", allowed=("normal", "rate", "proportion")),
        Column("transform", pl.Boolean, "Whether the fit itself was on the log (rate) or logit (proportion) scale and "
               "back-transformed (PHE `transform`); standard errors and draws are on that scale either way."),
        Column("multiplier", pl.Float64, "Scale the SII is expressed in: the indicator's multiplier (1: a proportion "
               "difference, x 100 for percentage points; 100000: per 100,000); a negative one would reverse the SII "
               "and invert the RII."),
        Column("sii_polarity", pl.String, "What the SII's sign means for this indicator, in words (which way is worse "
               "for the most deprived)."),
        Column("confidence", pl.Float64, "Confidence level of the limits."),
        Column("repetitions", pl.Int64, "Number of simulated draws."),
        Column("seed", pl.Int64, "Seed of the random generator: re-running with it reproduces the limits."),
        Column("status", pl.String, "'computed', or why not (e.g. a quantile is suppressed or absent)."),
        Column("disclosure_profile", pl.String, "Disclosure profile of the counts the indices were computed from."),
    ),
    primary_key=("reporting_month", "indicator_id", "imd_vintage", "quantile_type"),
)

STANDARDISED_TABLE = Table(
    name="published.age_standardised_rates",
    description=(
        "Directly age-standardised rates (European Standard Population 2013, Dobson limits; PHE DSR method) beside "
        "the crude rates, for the indicators where age confounds the comparison, per reporting month x indicator x "
        "IMD vintage x breakdown (Core20 vs rest, IMD quintile, broad ethnicity) x group, with the gap against the "
        "breakdown's reference group. Computed from disclosure-controlled counts only."
    ),
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month."),
        Column("indicator_id", pl.String, "Indicator identifier."),
        Column("indicator_version", pl.Int32, "Version of the indicator definition."),
        Column("value_type", pl.String, "proportion or rate (the scale of every rate here).", allowed=("proportion", "rate")),
        Column("multiplier", pl.Int64, "Scale of the rates: 1 for a proportion, N for a rate per N persons."),
        Column("imd_vintage", pl.String, "IMD vintage of deprivation groups (the primary one labels the others).", allowed=IMD_VINTAGES),
        Column("breakdown", pl.String, "core20, imd_quintile or ethnicity_broad.", allowed=("core20", "imd_quintile", "ethnicity_broad")),
        Column("group", pl.String, "Group within the breakdown (as in the gap table)."),
        Column("reference_group", pl.String, "The group gaps are measured against.", nullable=True),
        Column("numerator", pl.Int64, "Published (controlled) numerator of the group, as in the gap table.", nullable=True),
        Column("denominator", pl.Int64, "Published (controlled) denominator of the group, as in the gap table.", nullable=True),
        Column("crude_rate", pl.Float64, "Crude rate (the gap table's rate).", nullable=True),
        Column("crude_rate_lower", pl.Float64, "Lower limit of the crude rate.", nullable=True),
        Column("crude_rate_upper", pl.Float64, "Upper limit of the crude rate.", nullable=True),
        Column("crude_gap", pl.Float64, "Crude rate minus the reference group's (the gap table's gap).", nullable=True),
        Column("crude_gap_lower", pl.Float64, "Lower limit of the crude gap.", nullable=True),
        Column("crude_gap_upper", pl.Float64, "Upper limit of the crude gap.", nullable=True),
        Column("dsr", pl.Float64, "Directly age-standardised rate over the standard bands used (ESP2013 weights).", nullable=True),
        Column("dsr_lower", pl.Float64, "Lower Dobson limit of the DSR.", nullable=True),
        Column("dsr_upper", pl.Float64, "Upper Dobson limit of the DSR.", nullable=True),
        Column("dsr_gap", pl.Float64, "DSR minus the reference group's DSR.", nullable=True),
        Column("dsr_gap_lower", pl.Float64, "Lower limit of the DSR gap (normal approximation, Dobson variances added).", nullable=True),
        Column("dsr_gap_upper", pl.Float64, "Upper limit of the DSR gap.", nullable=True),
        Column("standard_population", pl.String, "The standard population (ESP2013)."),
        Column("standardised_ages", pl.String, "The ESP2013 bands standardised over (the same for every group of the breakdown).", nullable=True),
        Column("bands_used", pl.Int32, "How many ESP2013 bands the DSR is taken over."),
        Column("age_confounding", pl.String, "Why age confounds this indicator's comparison (why it is standardised)."),
        Column("status", pl.String, "'computed', or why there is no DSR (hidden counts, under 10 events, no common band)."),
        Column("is_suppressed", pl.Boolean, "The group's counts are hidden (no statistic is shown)."),
        Column("confidence", pl.Float64, "Confidence level of the limits."),
        Column("disclosure_profile", pl.String, "Disclosure profile applied to every count before any statistic."),
    ),
    primary_key=("reporting_month", "indicator_id", "imd_vintage", "breakdown", "group"),
)

SPC_TABLE = Table(
    name="published.spc_series",
    description=(
        "NHS Making Data Count XmR charts of published monthly rates: one row per chart point, for the series as "
        "published up to and including the reporting month (the month whose run produced it). Each indicator's "
        "series is chosen from its window (series_basis, series_note) and the rule conventions are recorded per row."
    ),
    columns=(
        Column("reporting_month", pl.Date, "The run's month: the chart includes every published month up to it."),
        Column("point_month", pl.Date, "The month this point is."),
        Column("indicator_id", pl.String, "Indicator identifier."),
        Column("indicator_version", pl.Int32, "Version of the indicator definition (a new version starts a new series)."),
        Column("imd_vintage", pl.String, "IMD vintage label of the gap-table rows.", allowed=IMD_VINTAGES),
        Column("breakdown", pl.String, "Gap-table breakdown of the series."),
        Column("group", pl.String, "Gap-table group of the series."),
        Column("rate", pl.Float64, "Published rate of the point."),
        Column("n_points", pl.Int64, "Points in the series (suppressed months are left out)."),
        Column("mean", pl.Float64, "Centre line: mean of the points."),
        Column("lower_limit", pl.Float64, "Lower natural process limit: mean - 2.66 x mean moving range.", nullable=True),
        Column("upper_limit", pl.Float64, "Upper natural process limit: mean + 2.66 x mean moving range.", nullable=True),
        Column("is_outside_limits", pl.Boolean, "Point outside the process limits."),
        Column("is_shift", pl.Boolean, "Point in a run of run_length or more on one side of the mean."),
        Column("is_trend", pl.Boolean, "Point in a run of trend_length or more consecutively increasing or decreasing points."),
        Column("is_two_in_three", pl.Boolean, "Point close to a limit in two of three consecutive points on one side "
               "(always false when two_in_three is off)."),
        Column("point_type", pl.String, "common_cause or special_cause_improvement/concern/neutral_high/neutral_low; "
               "null when the series gets no verdict (verdict_status).", nullable=True, allowed=POINT_TYPES),
        Column("variation", pl.String, "Series variation icon: the latest point's type; null without a verdict.",
               nullable=True, allowed=POINT_TYPES),
        Column("assurance", pl.String, "Series assurance icon against the indicator's target; null without a verdict "
               "or a target.", nullable=True, allowed=("consistent_pass", "consistent_fail", "inconsistent")),
        Column("target", pl.Float64, "The indicator's target, if it has one.", nullable=True),
        Column("verdict_status", pl.String, "'assessed', or why the series gets no point type, variation or assurance "
               "(fewer than min_points points; a series basis that gives none)."),
        Column("is_short_series", pl.Boolean, "Fewer than min_points points: the limits are trial limits."),
        Column("series_basis", pl.String, "How the indicator's series is made from its window: monthly, every_window "
               "(every W-th month, windows not overlapping), same_month_each_campaign, monthly_overlapping, "
               "monthly_campaign, monthly_cumulative or unplanned.", allowed=SPC_SERIES_BASES),
        Column("window_months", pl.Int32, "Longest rolling window of the indicator's rules, in months (12 for a "
               "campaign measure).", nullable=True),
        Column("series_note", pl.String, "What the series is and what its overlap does to the chart, in words."),
        Column("run_length", pl.Int32, "Points on one side of the mean that make a shift."),
        Column("trend_length", pl.Int32, "Points each higher (lower) than the last that make a trend."),
        Column("screen_outliers", pl.Boolean, "Whether moving ranges of 3.267 x the mean moving range or more were "
               "left out of the limits."),
        Column("two_in_three", pl.Boolean, "Whether the two-of-three-close-to-a-limit rule was applied."),
        Column("min_points", pl.Int32, "Points a series needs before it gets a verdict."),
    ),
    primary_key=("reporting_month", "point_month", "indicator_id", "indicator_version", "imd_vintage", "breakdown", "group"),
)


# ---------------------------------------------------------------------------
# Serving star schema (for Power BI): dimensions declared here; every published table
# with a `reporting_month` becomes a fact `fact_<table>` carrying the keys below plus its
# own contract's columns (pipelines/segmentation/star.py). A new fact therefore needs only
# its published table and, for the data dictionary, its contract here.
# ---------------------------------------------------------------------------

STAR_KEYS = Table(
    name="star.keys",
    description="Keys added to every fact table, each joining one dimension (null when the fact has no such column).",
    columns=(
        Column("month_key", pl.Int32, "Reporting month as YYYYMM; joins dim_month."),
        Column("indicator_key", pl.String, "indicator_id@vN of the definition version that produced the row; joins dim_indicator.", nullable=True),
        Column("group_key", pl.String, "breakdown:group; joins dim_group.", nullable=True),
        Column("geography_key", pl.String, "level:code (practice, sub_icb or icb by ODS code; in the national release also region, or england:ENG); joins dim_geography. ICS-wide rows carry the ICB of the extract's practices; national rows the area they describe.", nullable=True),
    ),
)

DIM_MONTH = Table(
    name="star.dim_month",
    description="One row per reporting month present in any fact.",
    columns=(
        Column("month_key", pl.Int32, "YYYYMM."),
        Column("reporting_month", pl.Date, "First day of the reporting month."),
        Column("month_label", pl.String, "e.g. 'Oct 2026'."),
        Column("year", pl.Int32, "Calendar year."),
        Column("month_number", pl.Int32, "Calendar month 1-12."),
        Column("financial_year", pl.String, "NHS financial year (April to March), e.g. '2026/27'."),
    ),
    primary_key=("month_key",),
)

DIM_INDICATOR = Table(
    name="star.dim_indicator",
    description="One row per indicator definition version: what it measures, which way is better, its target and definition hash.",
    columns=(
        Column("indicator_key", pl.String, "indicator_id@vN."),
        Column("indicator_id", pl.String, "Indicator identifier (slice by this to follow an indicator across versions)."),
        Column("indicator_version", pl.Int32, "Definition version."),
        Column("title", pl.String, "What the indicator measures.", nullable=True),
        Column("clinical_area", pl.String, "Core20PLUS5 clinical area.", nullable=True),
        Column("direction", pl.String, "higher_is_better or lower_is_better: sets the sign of every gap.", nullable=True),
        Column("target", pl.Float64, "National or local aim as a proportion (e.g. 0.6), when there is one.", nullable=True),
        Column("multiplier", pl.Int64, "Scale of the published rate, limits, gaps and SII: 1 for a proportion (shown as a "
               "percentage), e.g. 100000 for a rate per 100,000; the Power BI measures format rates, gaps and intervals by it.",
               nullable=True),
        Column("value_type", pl.String, "'proportion' of persons (shown as a percentage) or 'rate' of events per "
               "population (shown per multiplier, never with a % sign).", nullable=True),
        Column("definition_hash", pl.String, "sha256 of the definition text (latest month using this version).", nullable=True),
        Column("first_month", pl.Date, "First reporting month published with this version.", nullable=True),
        Column("last_month", pl.Date, "Latest reporting month published with this version.", nullable=True),
    ),
    primary_key=("indicator_key",),
)

DIM_GROUP = Table(
    name="star.dim_group",
    description="One row per breakdown and group (IMD decile/quintile, Core20 vs rest, ethnicity, sex, age band, cohorts ...).",
    columns=(
        Column("group_key", pl.String, "breakdown:group."),
        Column("breakdown", pl.String, "Dimension the facts are grouped by."),
        Column("group", pl.String, "Group code as published."),
        Column("group_label", pl.String, "Readable label, e.g. 'IMD quintile 1 (most deprived)'."),
        Column("sort_order", pl.Int32, "Order to show the groups within their breakdown (unknown last)."),
        Column("is_reference", pl.Boolean, "Whether gaps in this breakdown are measured against this group."),
    ),
    primary_key=("group_key",),
)

DIM_GEOGRAPHY = Table(
    name="star.dim_geography",
    description="GP practices, Sub-ICB locations and ICBs (NHS ODS, September 2025) as one hierarchy: practice -> Sub-ICB -> ICB -> region; the national release adds its NHS England regions and England.",
    columns=(
        Column("geography_key", pl.String, "level:code."),
        Column("level", pl.String, "practice, sub_icb, icb, region (national release) or england (national release).",
               allowed=("practice", "sub_icb", "icb", "region", "england")),
        Column("code", pl.String, "ODS code at this level (ENG for England)."),
        Column("name", pl.String, "Organisation name.", nullable=True),
        Column("practice_code", pl.String, "ODS practice code (practice rows).", nullable=True),
        Column("sub_icb_code", pl.String, "ODS Sub-ICB location code.", nullable=True),
        Column("sub_icb_name", pl.String, "Sub-ICB location name.", nullable=True),
        Column("icb_code", pl.String, "ODS ICB code.", nullable=True),
        Column("icb_name", pl.String, "ICB name.", nullable=True),
        Column("region_code", pl.String, "ODS NHS England region code.", nullable=True),
        Column("is_active", pl.Boolean, "Whether the organisation was open in the ODS release (practices).", nullable=True),
    ),
    primary_key=("geography_key",),
)

STAR_DIMENSIONS = (DIM_MONTH, DIM_INDICATOR, DIM_GROUP, DIM_GEOGRAPHY)

# The national release (pipelines/national): each published table carries the area a row
# describes, and the areas table says how the areas nest, for the star's geography.
AREA_COLUMNS = (
    Column("geography_level", pl.String, "The area this row describes: icb, region (NHS England region) or england.",
           allowed=("icb", "region", "england")),
    Column("geography_code", pl.String, "ODS code of the area (ICB or region), ENG for England."),
    Column("geography_name", pl.String, "Name of the area."),
)

NATIONAL_AREAS = Table(
    name="national.areas",
    description="The areas of a national release and how they nest: every ICB in the run with its NHS England region, each region, and England.",
    columns=(
        *AREA_COLUMNS,
        Column("icb_code", pl.String, "ODS ICB code (ICB rows).", nullable=True),
        Column("icb_name", pl.String, "ICB name (ICB rows).", nullable=True),
        Column("region_code", pl.String, "ODS NHS England region code (ICB and region rows).", nullable=True),
    ),
    primary_key=("geography_level", "geography_code"),
)

# ---------------------------------------------------------------------------
# Data quality: the quarantine (private, patient-level) and the history of every
# gate's result (aggregate counts only; published for each published month).
# ---------------------------------------------------------------------------

QUARANTINE = Table(
    name="staging.quarantine",
    description=(
        "Rows of the month's extract that failed a row-level rule, with the rule that caught each "
        "(the first in rule order). Private layer: it holds the row as supplied so it can be fixed, "
        "and is never published."
    ),
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month (the partition)."),
        Column("source_table", pl.String, "Input table the row came from.", allowed=("patients", "events")),
        Column("source_file", pl.String, "File name within the extract folder."),
        Column("row_number", pl.Int64, "Data row in the file, from 1 (in a CSV with a header, line = row_number + 1)."),
        Column("rule", pl.String, "The rule that caught the row: '<column>_unreadable', '<column>_missing' or a suite's quarantine rule."),
        Column("column", pl.String, "Column the rule is about.", nullable=True),
        Column("patient_id", pl.String, "Pseudonymised patient identifier as supplied, if readable.", nullable=True),
        Column("record", pl.String, "The row's contract columns as supplied (JSON text)."),
    ),
)

QUALITY_KINDS = ("expectation", "quarantine_rule", "quarantine_share", "match_rate", "match_method", "practice_address",
                 "disclosure_rule")

DATA_QUALITY = Table(
    name="audit.data_quality",
    description=(
        "One row per month x gate x measure: every expectation's result, quarantined rows by rule, "
        "quarantine shares and postcode match rates, so quality can be followed month by month. "
        "Counts and shares only; a re-run replaces the month's rows for the gates it ran."
    ),
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month."),
        Column("asset", pl.String, "Gated asset, e.g. 'staging/patients'."),
        Column("check_name", pl.String, "The asset check (gate) that produced the row."),
        Column("kind", pl.String, "What the row measures.", allowed=QUALITY_KINDS),
        Column("name", pl.String, "Expectation type, rule, or match method."),
        Column("column", pl.String, "Column(s) concerned.", nullable=True),
        Column("passed", pl.Boolean, "Whether this measure passed; null for counts that are only reported.", nullable=True),
        Column("severity", pl.String, "ERROR (blocks publication) or WARN (reported only).", allowed=("ERROR", "WARN")),
        Column("n", pl.Int64, "Rows caught, failing or matched.", nullable=True),
        Column("n_total", pl.Int64, "Rows the measure was taken over.", nullable=True),
        Column("share", pl.Float64, "n / n_total (or the observed rate).", nullable=True),
        Column("threshold", pl.Float64, "The configured limit the share was held to, if any.", nullable=True),
        Column("run_id", pl.String, "Dagster run that recorded the row."),
        Column("recorded_at", pl.Datetime("us"), "When the row was recorded (UTC)."),
    ),
    primary_key=("reporting_month", "asset", "check_name", "kind", "name", "column"),
)

# Published with each month: the same rows without which run wrote them, so that re-running
# a month publishes identical rows (see pipelines/publication.py).
PUBLISHED_DATA_QUALITY = Table(
    name="published.data_quality",
    description="The data-quality history of each published month: every gate's measures (counts and shares only).",
    columns=tuple(c for c in DATA_QUALITY.columns if c.name not in ("run_id", "recorded_at")),
    primary_key=DATA_QUALITY.primary_key,
)

# ---------------------------------------------------------------------------
# Optional linked feeds: secondary-care data keyed by the same pseudonymised patient id
# (DOMAIN.md section 4). Each is an optional table in the extract folder, `NAME.parquet`,
# `NAME.csv` or `NAME.csv.gz`, with exactly these column names. When a feed is absent its
# indicators are reported as not available for the month, never as zero.
# ---------------------------------------------------------------------------

BOOLEAN_TEXT = {"true": True, "t": True, "yes": True, "y": True, "1": True,
                "false": False, "f": False, "no": False, "n": False, "0": False}


@dataclass(frozen=True)
class Feed:
    """An optional linked input table: its contract, the column that dates a record, its source."""

    name: str
    table: Table
    date_column: str
    source: str

    def staging(self) -> Table:
        """Return the staged contract: the input columns after `reporting_month`."""
        return Table(
            name=f"staging.{self.name}",
            description=f"{self.table.description} Rows of patients registered at month end, dated on or before it.",
            columns=(Column("reporting_month", pl.Date, "First day of the reporting month (the partition)."), *self.table.columns),
        )


_FEED_PATIENT = Column("patient_id", pl.String, "Pseudonymised patient identifier, the same as in the GP extract.")

MATERNITY_FEED = Feed(
    name="maternity",
    table=Table(
        name="maternity",
        description="Maternity Services Data Set (MSDS): one row per pregnancy booked for antenatal care.",
        columns=(
            _FEED_PATIENT,
            Column("booking_date", pl.Date, "Date of the antenatal booking appointment."),
            Column(
                "is_on_continuity_pathway", pl.Boolean,
                "Whether the woman was placed on a midwifery continuity of carer pathway (MSDS: by 28 weeks' gestation).",
            ),
        ),
    ),
    date_column="booking_date",
    source="NHS England Maternity Services Data Set (MSDS), linked by the ICB's data service",
)

CANCER_REGISTRY_FEED = Feed(
    name="cancer_registry",
    table=Table(
        name="cancer_registry",
        description="National Cancer Registration and Analysis Service (NCRAS): one row per registered tumour.",
        columns=(
            _FEED_PATIENT,
            Column("diagnosis_date", pl.Date, "Date of diagnosis of the tumour."),
            Column(
                "stage", pl.Int8,
                "Stage at diagnosis, 1 to 4; blank when the tumour was not staged (excluded from staged cancers).",
                nullable=True, allowed=("1", "2", "3", "4"),
            ),
            Column("tumour_site", pl.String, "Tumour site as the registry labels it (for information only).", required=False, nullable=True),
        ),
    ),
    date_column="diagnosis_date",
    source="NHS England National Disease Registration Service (cancer registry), linked by the ICB's data service",
)

DENTAL_EXTRACTIONS_FEED = Feed(
    name="dental_extractions",
    table=Table(
        name="dental_extractions",
        description="Hospital Episode Statistics (HES) admitted-care episodes with a tooth extraction.",
        columns=(
            _FEED_PATIENT,
            Column("episode_date", pl.Date, "Start date of the hospital episode."),
            Column(
                "is_caries_extraction", pl.Boolean,
                "Whether the supplier classed the episode as a tooth extraction due to decay (dental caries as "
                "the primary diagnosis). The pipeline holds no OPCS-4 / ICD-10 codelists, so this flag is the "
                "supplier's, following OHID's hospital tooth extractions method.",
            ),
        ),
    ),
    date_column="episode_date",
    source="NHS England Hospital Episode Statistics (HES APC), linked by the ICB's data service",
)

MH_CONTACTS_FEED = Feed(
    name="mh_contacts",
    table=Table(
        name="mh_contacts",
        description=(
            "Mental Health Services Data Set (MHSDS): one row per attended contact with a children and young "
            "people's mental health service (the supplier leaves out unattended appointments)."
        ),
        columns=(
            _FEED_PATIENT,
            Column("contact_date", pl.Date, "Date of the attended contact."),
        ),
    ),
    date_column="contact_date",
    source="NHS England Mental Health Services Data Set (MHSDS), linked by the ICB's data service",
)

FEEDS: dict[str, Feed] = {f.name: f for f in (MATERNITY_FEED, CANCER_REGISTRY_FEED, DENTAL_EXTRACTIONS_FEED, MH_CONTACTS_FEED)}

FEED_AVAILABILITY = Table(
    name="staging.feed_availability",
    description="Which optional linked feeds the month's extract supplied, with their row counts.",
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month."),
        Column("feed", pl.String, "Feed name (see FEEDS)."),
        Column("is_present", pl.Boolean, "Whether the extract folder held the feed's table."),
        Column("n_rows", pl.Int64, "Rows read from the feed's file (0 when absent)."),
        Column("n_staged", pl.Int64, "Rows kept: registered patients, dated on or before month end, duplicates dropped."),
    ),
    primary_key=("reporting_month", "feed"),
)

# ---------------------------------------------------------------------------
# Lineage (the audit trail): what produced each month's figures. Aggregates and
# definitions only — none of these tables holds a patient-level value.
# ---------------------------------------------------------------------------

DEFINITION_USAGE = Table(
    name="lineage.definition_usage",
    description="Every definition (register, cohort, indicator, ICS configuration) a month's run used, with its full text.",
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month."),
        Column("definition_kind", pl.String, "register, cohort, indicator or ics.", allowed=("register", "cohort", "indicator", "ics")),
        Column("definition_id", pl.String, "Definition id."),
        Column("definition_version", pl.Int32, "Version the definition's authors gave it."),
        Column("definition_hash", pl.String, "sha256 of the canonical text of the definition and everything it uses."),
        Column("definition_text", pl.String, "The validated definition as YAML (parameters substituted)."),
        Column("source_file", pl.String, "Definition file it came from."),
        Column("is_available", pl.Boolean, "Whether it could be evaluated this month (codes and feeds present)."),
        Column("not_available_reason", pl.String, "Why not, when it could not.", nullable=True),
    ),
    primary_key=("reporting_month", "definition_kind", "definition_id"),
)

RUN_MANIFEST = Table(
    name="lineage.run_manifest",
    description=(
        "Everything a month's figures depend on, one row per item: definition hashes, codelist and reference "
        "file checksums, IMD vintage, settings and the code version."
    ),
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month."),
        Column("run_id", pl.String, "Dagster run id that produced the month."),
        Column(
            "item_type", pl.String, "What the row records.",
            allowed=("definition", "codelist", "reference_file", "feed", "setting", "code"),
        ),
        Column("item_id", pl.String, "Definition / codelist / file / setting name."),
        Column("item_version", pl.String, "Version, vintage or value.", nullable=True),
        Column("item_hash", pl.String, "sha256 (definitions, codelists, reference files).", nullable=True),
        Column("item_source", pl.String, "Where it came from (publisher, path or folder).", nullable=True),
    ),
    primary_key=("reporting_month", "item_type", "item_id"),
)

ATTRITION = Table(
    name="lineage.attrition",
    description=(
        "Per register, cohort and indicator, how many registered patients each rule kept and removed, applied "
        "in order. Unrounded counts in the private warehouse: apply disclosure control before sharing them."
    ),
    columns=(
        Column("reporting_month", pl.Date, "First day of the reporting month."),
        Column("definition_kind", pl.String, "register, cohort or indicator.", allowed=("register", "cohort", "indicator")),
        Column("definition_id", pl.String, "Definition id."),
        Column("definition_version", pl.Int32, "Definition version."),
        Column("stage", pl.String, "Which part of the definition the rule belongs to.",
               allowed=("register", "criteria", "denominator", "numerator")),
        Column("step", pl.Int32, "Order of the rule (rules apply cumulatively within a definition)."),
        Column("rule_path", pl.String, "Where the rule sits in the definition (field path)."),
        Column("rule", pl.String, "The rule in words."),
        Column("n_before", pl.Int64, "Patients reaching the rule."),
        Column("n_kept", pl.Int64, "Patients the rule kept."),
        Column("n_removed", pl.Int64, "Patients the rule removed."),
    ),
    primary_key=("reporting_month", "definition_kind", "definition_id", "stage", "step"),
)
