"""What the generator injects: every rate, mix, prevalence and multiplier, in one place.

All the *rates* below (age structure, prevalences, ethnicity mixes, multipliers) are
APPROXIMATE published figures or plainly synthetic choices; each says which in a comment.
They make the data plausible, not a model of any real population. The ground truth
(`ground_truth.py`) records the multipliers with every extract, so a reader of
`ground_truth.json` sees what was injected without reading this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np


# Version 2: practices at their real relative list sizes (practices.py); version 1 was
# pipelines/segmentation/synth.py, whose practices took whatever share distance gave them.
GENERATOR = "pipelines.synthetic/2"
IMD_VINTAGE = "IMD2019"
EPOCH = date(1970, 1, 1)
YEAR = 365.2425

# Canonical UK postcode shape after normalisation (upper case, spaces removed). Invalid
# defects are checked against it so that no "invalid" postcode is accidentally valid.
POSTCODE_SHAPE = r"^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$"

# Nottingham city unitary authority: the brief's urban, more ethnically diverse area.
CITY_LADS = ("E06000018",)

# --- injected indicator rates (synthetic, documented in the ground truth) ----------------
# Base rates sit near the published national levels (SMI health checks roughly 60%,
# hypertension treated to target roughly 65-70% in CVDPREVENT); the multipliers are the
# gaps the pipeline must recover. They are synthetic choices, not estimates.
SMI_HEALTH_CHECK = {
    "base_rate": 0.62,
    "core20_multiplier": 0.80,
    "ethnicity_multipliers": {"White": 1.0, "Mixed": 0.95, "Asian": 0.92, "Black": 0.85, "Other": 0.95},
}
HYPERTENSION_TO_TARGET = {
    "base_rate": 0.68,
    "core20_multiplier": 0.88,
    "ethnicity_multipliers": {"White": 1.0, "Mixed": 0.97, "Asian": 0.93, "Black": 0.85, "Other": 0.97},
}
# Other areas: shares of eligible patients with the activity (synthetic, near published levels).
OTHER_AREAS = {
    "bp_case_finding_40plus_within_5y": {"base_rate": 0.78, "core20_multiplier": 0.90, "black_multiplier": 0.85},
    "copd_flu_current_campaign": {"base_rate": 0.78, "core20_multiplier": 0.92},
    "asthma_saba_issues_per_year": {"mean": 2.8, "core20_multiplier": 1.5},
    "hypertension_statin": {"base_rate": 0.45, "core20_multiplier": 0.90},
}

# The shipped ICS parameters (reference_data/definitions/ics.yaml) the ground truth
# assumes; a test checks they still agree.
FLU_CAMPAIGN_START = (9, 1)  # month, day; the COVID-19 autumn campaign uses the same start
RELIEVER_THRESHOLD = 6
CYP_MAX_AGE = 17

# Library indicators drawn directly (synthetic rates near published levels where there
# are any; every multiplier is a synthetic choice, the gap the pipeline must recover).
LIBRARY_RATES = {
    "copd_pneumococcal_ever": {"base_rate": 0.72, "core20_multiplier": 0.90},
    "copd_covid_current_campaign": {
        "base_rate": 0.62, "core20_multiplier": 0.85,
        "ethnicity_multipliers": {"White": 1.0, "Mixed": 0.9, "Asian": 0.85, "Black": 0.7, "Other": 0.9},
    },
    "cyp_type1_cgm_12m": {
        "base_rate": 0.72, "core20_multiplier": 0.80,
        "ethnicity_multipliers": {"White": 1.0, "Mixed": 0.9, "Asian": 0.85, "Black": 0.8, "Other": 0.9},
    },
    "cyp_diabetes_bp_12m": {"base_rate": 0.70, "core20_multiplier": 0.85},
    "cyp_epilepsy_review_12m": {"base_rate": 0.60, "core20_multiplier": 0.80},
    "qrisk_recorded_5y_40_84": {"base_rate": 0.40},
    "qrisk_high_statin": {"base_rate": 0.45, "core20_multiplier": 0.85},
    "diabetes_type1_share": {"cyp": 0.95, "adults": 0.08, "type_coded": 0.97},
}
# Linked feeds (synthetic rates; gaps in the directions reported for each area).
FEED_RATES = {
    "maternity_booking_12m": {"aged_18_40": 0.07, "aged_16_17_or_41_45": 0.02},
    "continuity_of_carer": {
        "base_rate": 0.30, "core20_multiplier": 1.25,
        "ethnicity_multipliers": {"White": 1.0, "Mixed": 1.1, "Asian": 1.15, "Black": 1.25, "Other": 1.1},
    },
    "cancer_diagnosis_12m": {"at_65": 0.004, "per_year_of_age": 0.06, "cap": 0.03, "min_age": 30},
    "cancer_stage_1_2": {"base_rate": 0.58, "core20_multiplier": 0.88, "aged_75_plus_multiplier": 0.90, "unstaged_share": 0.15},
    "caries_extraction_12m_aged_0_10": {"base_rate": 0.004, "core20_multiplier": 2.5},
    "cyp_mh_contact_12m": {
        "base_rate": 0.07, "core20_multiplier": 1.10, "under_5_multiplier": 0.30,
        "ethnicity_multipliers": {"White": 1.0, "Mixed": 0.9, "Asian": 0.6, "Black": 0.7, "Other": 0.8},
    },
}

# --- practices -------------------------------------------------------------------------------
# Patients register near home, at bigger practices more often: a practice's pull on a home
# is its list size times exp(-distance / 2 km) (a synthetic choice: a gravity model, the
# distance decay a guess that keeps most registrations within a few kilometres).
PRACTICE_DISTANCE_DECAY_M = 2000.0
# When an extract is smaller than the ICB's registered population, this many seeded
# candidate subsets of practices are compared (practices.plan_practices). Their score
# weighs a departure of 2 percentage points from the ICB's Core20 or ethnic-minority share
# as much as a 10% departure of the practices' common scale from their real list sizes.
PRACTICE_CANDIDATES = 100
PRACTICE_SHARE_TOLERANCE = 0.02
PRACTICE_SCALE_TOLERANCE = 1.10

# Broad ethnic groups, in the order of the codelist's grouping_6 (1 White ... 5 Other).
ETH6 = ("White", "Mixed", "Asian", "Black", "Other")

# Approximate ONS mid-year population shares for England by 5-year band (0-4 ... 90+),
# roughly mid-2021/2022; normalised before use.
AGE_BAND_SHARES = np.array(
    [5.4, 5.9, 6.0, 5.7, 6.0, 6.5, 6.8, 6.7, 6.3, 6.2, 6.8, 6.7, 5.9, 5.0, 5.0, 3.7, 2.6, 1.5, 0.9]
)

# Ethnic mix by area (synthetic, loosely after Census 2021: Nottingham city roughly two
# thirds White, Nottinghamshire districts above nine tenths White).
ETH_MIX_CITY = np.array([0.655, 0.058, 0.148, 0.100, 0.039])
ETH_MIX_ELSEWHERE = np.array([0.925, 0.022, 0.032, 0.010, 0.011])


def ethnic_mix(is_city: np.ndarray, decile: np.ndarray) -> np.ndarray:
    """Return (n, 5) unnormalised weights of the broad groups (ETH6 order) for homes in these areas.

    More ethnic-minority residents in the city and in more deprived LSOAs (synthetic
    gradient: every minority group's weight x1.5 in decile 1 down to x0.6 in decile 10).

    Examples:
        >>> ethnic_mix(np.array([False]), np.array([1])).round(4).tolist()
        [[0.925, 0.033, 0.048, 0.015, 0.0165]]
    """
    mix = np.where(np.asarray(is_city)[:, None], ETH_MIX_CITY[None, :], ETH_MIX_ELSEWHERE[None, :])
    minority = 1.5 - 0.1 * (np.asarray(decile) - 1)
    return mix * np.concatenate([np.ones((mix.shape[0], 1)), np.repeat(minority[:, None], 4, axis=1)], axis=1)

# Shares of the 16 census-2001 groups within each broad group (synthetic).
ETH16_WITHIN = {
    0: ((1, 2, 3), (0.88, 0.01, 0.11)),
    1: ((4, 5, 6, 7), (0.35, 0.15, 0.30, 0.20)),
    2: ((8, 9, 10, 11), (0.35, 0.38, 0.04, 0.23)),
    3: ((12, 13, 14), (0.30, 0.62, 0.08)),
    4: ((15, 16), (0.30, 0.70)),
}


@dataclass(frozen=True)
class Condition:
    """How one register condition is drawn: target prevalence and its age/deprivation shape."""

    name: str
    diagnosis: str  # codelist id of the diagnosis cluster
    resolved: str | None  # codelist id of the resolved cluster (None: lifelong)
    target: float  # register prevalence over `min_scope_age`+ (approximate QOF level)
    min_scope_age: int  # the population the target refers to
    age_knots: tuple[tuple[int, ...], tuple[float, ...]]  # relative prevalence by age
    deprivation_ratio: float  # decile 1 vs decile 10 prevalence ratio
    onset_age: int  # earliest age for a diagnosis date
    resolved_share: float = 0.0  # of ever-diagnosed: resolved and off the register
    rediagnosed_share: float = 0.0  # of ever-diagnosed: resolved then diagnosed again (on)
    ethnicity_multipliers: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)


# Approximate QOF 2023-24 England prevalences (NHS England, QOF prevalence tables):
# MH 0.96% all ages, LD 0.57%, hypertension 14.8%, COPD 1.9%, asthma 6.5% (6+),
# diabetes 7.7% (17+), epilepsy 0.8% (18+). Autism (~1%) follows recorded-autism studies
# in primary care (e.g. O'Nions et al. 2023), far higher in children. Deprivation ratios and
# ethnicity multipliers are synthetic, in the direction of published gradients.
CONDITIONS = (
    Condition("ld", "ld_cod_20241205", None, 0.005, 0, ((0, 1, 5, 18, 60, 80, 110), (0, 0.6, 1.0, 1.0, 0.8, 0.4, 0.3)), 1.5, 1),
    Condition("autism", "autism_cod", None, 0.010, 0, ((0, 2, 10, 18, 30, 50, 70, 110), (0, 1.5, 3.0, 2.2, 1.2, 0.4, 0.15, 0.1)), 1.2, 2),
    Condition("smi", "mh_cod", "smhres", 0.0095, 0, ((0, 14, 18, 30, 45, 65, 85, 110), (0, 0, 0.5, 1.0, 1.3, 1.1, 0.9, 0.9)), 2.0, 14, 0.08, 0.02, (1.0, 1.2, 1.0, 1.8, 1.2)),
    Condition("hypertension", "hyp_cod", "hypres_cod", 0.14, 0, ((0, 18, 30, 40, 50, 60, 70, 80, 110), (0, 0, 0.03, 0.08, 0.18, 0.32, 0.48, 0.60, 0.65)), 1.25, 18, 0.05, 0.01, (1.0, 1.0, 1.0, 1.3, 1.0)),
    Condition("copd", "copd_cod", "copdres_cod", 0.019, 0, ((0, 39, 40, 50, 60, 70, 80, 110), (0, 0, 0.3, 0.8, 1.8, 3.2, 4.0, 4.0)), 2.5, 35, 0.02, 0.005),
    Condition("asthma", "ast_cod", "astres_cod", 0.065, 6, ((0, 2, 5, 15, 40, 70, 110), (0, 0.3, 1.0, 1.2, 1.0, 1.0, 0.9)), 1.25, 2, 0.12, 0.02),
    Condition("diabetes", "dm_cod", "dmres_cod", 0.075, 17, ((0, 1, 16, 17, 30, 40, 50, 60, 70, 80, 110), (0, 0.02, 0.02, 0.1, 0.15, 0.35, 0.7, 1.2, 1.7, 1.9, 1.6)), 1.7, 1, 0.02, 0.005, (1.0, 1.2, 2.0, 1.5, 1.2)),
    Condition("epilepsy", "epil_cod", "epilres_cod", 0.008, 18, ((0, 1, 110), (0, 1.0, 1.0)), 1.5, 1, 0.10, 0.02),
)

CODELISTS = (
    "ethnicity_snomed", "eth_not_stated", "ld_cod_20241205", "autism_cod", "mh_cod", "smhres", "hyp_cod",
    "hypres_cod", "copd_cod", "copdres_cod", "ast_cod", "astres_cod", "dm_cod", "dmres_cod",
    "epil_cod", "epilres_cod", "bp_cod", "systolic_blood_pressure_qof", "diastolic_blood_pressure_qof",
    "bp_systolic_clinic", "bp_diastolic_clinic", "bp_systolic_out_of_office", "homebp_diastolic_average",
    "smoking_never", "bmival_cod", "weight_snomed", "bmi_stage", "alcohol_consumption_gmsde", "lithium", "epilepsy_review",
    "cholesterol_tests", "hba1c_tests", "lsmok_cod", "exsmok_cod", "flu_cod",
    "saba_inhalers_resp02", "statin_medication", "dmtype1_cod", "dmtype2_cod", "diabetes_cgm_dmd",
    "qriskscore_cod", "pneumococcal_vaccination_gmsde", "covadm1_5",
)

CLUSTER_IDS = tuple(i for c in CONDITIONS for i in (c.diagnosis, c.resolved) if i is not None)
TYPE_SPECIFIC = {"dm_cod": ("dmtype1_cod", "dmtype2_cod")}

# The QOF observables most practices record; other codes of each list appear less often.
MAIN_SYSTOLIC = "271649006"
MAIN_DIASTOLIC = "271650006"
MAIN_HOME_SYSTOLIC = "413606001"
# The SMI physical health check's six components (NHS England collection).
SMI_COMPONENTS = 6
# Registered adults with no SMI diagnosis issued lithium in the last 6 months (QOF MH register).
LITHIUM_ONLY_RATE = 0.002
# "Ethnic group not recorded" (PRIMIS ETH_NORECORD): NHS ethnic category 99 "not known", not Z.
ETH_NOT_RECORDED = "312861003"  # Average home systolic blood pressure
# A systolic code that is no reading under the BP rule (DOMAIN.md section 4): the maximum.
MAXIMUM_SYSTOLIC = "314439003"
# Home / daytime-ambulatory averages are judged this much lower (NICE NG136).
HOME_BP_ADJUSTMENT = 5
