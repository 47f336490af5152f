"""ICB populations and the national synthetic plan come from the shared reference files, summed correctly."""

import csv
import gzip

import pytest

from reference_data import loader

pytestmark = pytest.mark.reference


def _raw_population_of(icb_ods: str) -> int:
    # Independent of the loader's parsers: the two CSVs read with the csv module.
    directory = loader.resolve_reference_dir(None)
    with gzip.open(directory / "lsoa11_sicbl22_icb22_lad22.csv.gz", "rt", encoding="utf-8") as handle:
        lsoas = {row["lsoa11_code"] for row in csv.DictReader(handle) if row["icb22_code_nhs"] == icb_ods}
    with gzip.open(directory / "imd2019_lsoa11_population_denominators.csv.gz", "rt", encoding="utf-8-sig") as handle:
        return sum(int(row["Total population: mid 2015 (excluding prisoners)"].replace(",", ""))
                   for row in csv.DictReader(handle) if row["LSOA code (2011)"] in lsoas)


def test_icb_populations_cover_england_and_sum_each_icbs_lsoas():
    from pipelines.national.geography import icb_populations

    table = icb_populations()
    assert table.height == 42
    assert table["region_code"].n_unique() == 7
    qt1 = table.filter(icb_code="QT1").row(0, named=True)
    assert qt1["population"] == _raw_population_of("QT1")
    assert qt1["region_name"] == "Midlands"
    assert abs(table["share"].sum() - 1) < 1e-12


def test_national_plan_scales_each_icb_and_names_unknown_codes():
    from pipelines.national.synth import plan_national

    plan = plan_national(0.01, "QT1, qox")
    assert plan["icb_code"].to_list() == ["QOX", "QT1"]
    assert plan.filter(icb_code="QT1")["n_patients"][0] == round(_raw_population_of("QT1") * 0.01)
    with pytest.raises(ValueError, match=r"\['XXX'\] are not ICB ODS codes"):
        plan_national(0.01, "QT1,XXX")
    with pytest.raises(ValueError, match="--scale"):
        plan_national(0, "all")
