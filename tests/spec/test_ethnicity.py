"""Spec: ethnicity from the latest VALID code; 'Not stated' (Z), 'Not known' (99) and 'Unknown' (no code) kept apart.

The mapping is built here from rows shaped like the shared codelists (OpenSAFELY
ethnicity-snomed with grouping_6 / label_16 / nhs_ethnic_category, and the PRIMIS
not-stated list), with made-up codes. R = 2025-03-31.
"""

from __future__ import annotations

from datetime import date

import polars as pl
from polars.testing import assert_frame_equal

from pipelines.segmentation.cohorts import build_ethnicity_codes, derive_ethnicity, evaluate_cohorts
from pipelines.segmentation.definitions import parse_definitions

R = date(2025, 3, 31)


def table(text: str) -> pl.DataFrame:
    """Return an all-text frame from a literal '|' table; blank cells are nulls."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].split("|")]
    rows = [[cell.strip() or None for cell in line.split("|")] for line in lines[1:]]
    return pl.DataFrame(rows, schema={h: pl.String for h in header}, orient="row")


ETHNICITY_SNOMED = table(
    """
    code         | grouping_6 | label_6                       | grouping_16 | label_16                                  | nhs_ethnic_category
    WHITE_BRIT   | 1          | White                         | 1           | White - British                           | A
    BLACK_CARIB  | 4          | Black or Black British        | 12          | Black or Black British - Caribbean        | M
    BLACK_AFRIC  | 4          | Black or Black British        | 13          | Black or Black British - African          | N
    PAKISTANI    | 3          | Asian or Asian British        | 9           | Asian or Asian British - Pakistani        | J
    CHINESE      | 5          | Chinese or Other Ethnic Groups | 15         | Other Ethnic Groups - Chinese             | R
    """
)
NOT_STATED = table(
    """
    code      | primis_cluster
    REFUSED   | ETH_NOTGIPTREF
    NOTSTATED | ETH_NOTSTATED
    NORECORD  | ETH_NORECORD
    """
)
CODES = build_ethnicity_codes(ETHNICITY_SNOMED, NOT_STATED)


def events(text: str) -> pl.LazyFrame:
    return table(text).with_columns(pl.col("event_date").str.to_date()).lazy()


def test_latest_valid_code_wins_and_not_stated_not_known_and_unknown_stay_apart():
    # DOMAIN.md section 3 (the CVDPREVENT / GDPPR rule): a later "not stated", "refused" or
    # "not recorded" code never overrides an earlier stated ethnicity. Only a patient with no
    # stated code takes the latest unstated one: Z "Not stated" (declined, refused, not
    # stated) or 99 "Not known" ("Ethnic group not recorded", 312861003 in the shared list).
    recorded = events(
        """
        patient_id            | code        | event_date
        changed_later         | WHITE_BRIT  | 2010-01-01
        changed_later         | BLACK_AFRIC | 2020-01-01
        refused_after_valid   | PAKISTANI   | 2010-01-01
        refused_after_valid   | REFUSED     | 2021-01-01
        norecord_after_valid  | WHITE_BRIT  | 2010-01-01
        norecord_after_valid  | NORECORD    | 2022-01-01
        stated_after_z        | NOTSTATED   | 2010-01-01
        stated_after_z        | BLACK_CARIB | 2022-01-01
        same_day_conflict     | NOTSTATED   | 2022-01-01
        same_day_conflict     | CHINESE     | 2022-01-01
        only_refused          | REFUSED     | 2021-01-01
        z_then_norecord       | NOTSTATED   | 2019-01-01
        z_then_norecord       | NORECORD    | 2021-01-01
        only_norecord         | NORECORD    | 2021-01-01
        z_and_99_same_day     | NORECORD    | 2021-01-01
        z_and_99_same_day     | NOTSTATED   | 2021-01-01
        after_R_ignored       | WHITE_BRIT  | 2015-01-01
        after_R_ignored       | PAKISTANI   | 2025-04-01
        stated_only_after_R   | REFUSED     | 2020-01-01
        stated_only_after_R   | WHITE_BRIT  | 2025-04-01
        other_code_only       | SOMETHING   | 2022-01-01
        """
    )
    expected = table(
        """
        patient_id            | ethnic_category | ethnicity_16                       | ethnicity_broad
        after_R_ignored       | A               | White - British                    | White
        changed_later         | N               | Black or Black British - African   | Black or Black British
        norecord_after_valid  | A               | White - British                    | White
        only_norecord         | 99              | Not known                          | Not known
        only_refused          | Z               | Not stated                         | Not stated
        refused_after_valid   | J               | Asian or Asian British - Pakistani | Asian or Asian British
        same_day_conflict     | R               | Other Ethnic Groups - Chinese      | Other ethnic group
        stated_after_z        | M               | Black or Black British - Caribbean | Black or Black British
        stated_only_after_R   | Z               | Not stated                         | Not stated
        z_and_99_same_day     | Z               | Not stated                         | Not stated
        z_then_norecord       | 99              | Not known                          | Not known
        """
    )
    result = derive_ethnicity(recorded, CODES, reference_date=R).collect().sort("patient_id")
    # 'other_code_only' has no ethnicity code: absent here, 'Unknown' downstream.
    assert_frame_equal(result, expected)


def test_the_shared_lists_map_ethnic_group_not_recorded_to_not_known():
    from pipelines.segmentation.cohorts import load_ethnicity_codes

    mapping = load_ethnicity_codes()
    by_code = {row["code"]: row for row in mapping.iter_rows(named=True)}
    assert (by_code["312861003"]["ethnic_category"], by_code["312861003"]["ethnicity_broad"]) == ("99", "Not known")
    for code in ("415226007", "92531000000104", "312860002"):  # not stated, not stated (2001), refused
        assert (by_code[code]["ethnic_category"], by_code[code]["ethnicity_broad"]) == ("Z", "Not stated")


def test_ethnicity_criterion_sees_unknown_and_not_stated_as_different_groups():
    yaml_text = """
cohorts:
  - id: not_stated
    version: 1
    title: t
    description: d
    source: s
    criteria: {ethnicity: {broad: [Not stated]}}
  - id: unknown
    version: 1
    title: t
    description: d
    source: s
    criteria: {ethnicity: {broad: [Unknown]}}
  - id: not_known
    version: 1
    title: t
    description: d
    source: s
    criteria: {ethnicity: {categories: [99]}}
  - id: black_african_or_caribbean
    version: 1
    title: t
    description: d
    source: s
    criteria: {ethnicity: {categories: [M, N]}}
"""
    defs = parse_definitions({"cohorts.yaml": yaml_text}, known_codelists=set())
    patients = pl.LazyFrame({"patient_id": ["african", "refused", "never_coded", "not_recorded", "african_then_refused"],
                             "age": [30, 40, 50, 60, 70]})
    recorded = events(
        """
        patient_id           | code        | event_date
        african              | BLACK_AFRIC | 2020-01-01
        refused              | REFUSED     | 2020-01-01
        not_recorded         | NORECORD    | 2020-01-01
        african_then_refused | BLACK_AFRIC | 2019-01-01
        african_then_refused | REFUSED     | 2020-01-01
        """
    )
    ethnicity = derive_ethnicity(recorded, CODES, reference_date=R)
    members = (
        evaluate_cohorts(defs, patients, recorded, pl.LazyFrame(), {}, R, ethnicity=ethnicity)
        .collect()
        .select("cohort_id", "patient_id")
        .sort("cohort_id", "patient_id")
    )
    expected = table(
        """
        cohort_id                  | patient_id
        black_african_or_caribbean | african
        black_african_or_caribbean | african_then_refused
        not_known                  | not_recorded
        not_stated                 | refused
        unknown                    | never_coded
        """
    )
    assert_frame_equal(members, expected)
