"""Tests of the synthetic extract generator against the real reference data.

The ground truth is checked by recomputing it from the written files with small,
independent polars versions of the pipeline's rules (registers, SMI health check,
hypertension treated to target, Core20 by postcode -> LSOA 2011 -> IMD 2019), so a
generator whose events do not say what its ground truth claims fails here.
"""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from pipelines.segmentation.schemas import FEEDS, INPUT_EVENTS, INPUT_PATIENTS
from pipelines.synthetic import default_reporting_month, generate_extract
from reference_data import loader

pytestmark = pytest.mark.reference

N = 3_000
MONTH = date(2025, 2, 1)  # R = 2025-02-28: checks the month-end and window arithmetic
R = date(2025, 2, 28)
W0 = date(2024, 3, 1)  # R - 12 months + 1 day
POSTCODE_SHAPE = r"^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$"


@pytest.fixture(scope="module")
def extract(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_a")
    truth = generate_extract(out, reporting_month=MONTH, n_patients=N, seed=7, defect_rate=0.05)
    return {
        "dir": out,
        "truth": truth,
        "patients": pl.read_parquet(out / "patients.parquet"),
        "events": pl.read_parquet(out / "events.parquet"),
    }


def _codes(*ids: str) -> pl.Series:
    return pl.concat([loader.read_codelist(i)["code"] for i in ids]).unique()


def _normalised(col: str) -> pl.Expr:
    squashed = pl.col(col).str.to_uppercase().str.replace_all(r"\s", "")
    return (
        pl.when(squashed.str.contains(POSTCODE_SHAPE))
        .then(pl.concat_str([squashed.str.slice(0, squashed.str.len_chars() - 3), pl.lit(" "), squashed.str.slice(-3)]))
        .otherwise(None)
    )


@pytest.fixture(scope="module")
def people(extract):
    """Registered-at-R patients with age at R and the Core20 group the pipeline would see."""
    p = extract["patients"].with_columns(_normalised("postcode").alias("pc"))
    lookup = (
        loader.scan_postcode_lsoa11()
        .filter(pl.col("postcode").is_in(p["pc"].drop_nulls().implode()))
        .select("postcode", "lsoa11_code", "country_code")
        .collect()
    )
    imd = loader.read_imd2019().select("lsoa11_code", "imd2019_decile")
    dob = pl.col("date_of_birth")
    age = pl.lit(R.year) - dob.dt.year() - ((pl.lit(R.month) < dob.dt.month()) | ((pl.lit(R.month) == dob.dt.month()) & (pl.lit(R.day) < dob.dt.day()))).cast(pl.Int32)
    return (
        p.join(lookup, left_on="pc", right_on="postcode", how="left")
        .join(imd, on="lsoa11_code", how="left")
        .with_columns(
            age.alias("age"),
            ((pl.col("registration_start_date") <= R) & (pl.col("registration_end_date").is_null() | (pl.col("registration_end_date") > R))).alias("registered"),
            pl.when(pl.col("imd2019_decile") <= 2).then(pl.lit("core20")).when(pl.col("imd2019_decile") > 2).then(pl.lit("rest")).alias("group"),
        )
    )


def _register(events: pl.DataFrame, people: pl.DataFrame, diagnosis: str, resolved: str) -> pl.DataFrame:
    """Return patient_id of registered patients whose latest diagnosis is after their latest resolution."""
    ev = events.filter(pl.col("event_date") <= R)
    dx = ev.filter(pl.col("code").is_in(_codes(diagnosis).implode())).group_by("patient_id").agg(pl.col("event_date").max().alias("dx"))
    res = ev.filter(pl.col("code").is_in(_codes(resolved).implode())).group_by("patient_id").agg(pl.col("event_date").max().alias("res"))
    on = dx.join(res, on="patient_id", how="left").filter(pl.col("res").is_null() | (pl.col("dx") > pl.col("res")))
    return people.filter("registered").join(on.select("patient_id"), on="patient_id", how="semi")


def _smi_register(events: pl.DataFrame, people: pl.DataFrame) -> pl.DataFrame:
    """Return the SMI register: by diagnosis (MH_COD after SMHRES) or lithium issued in the last 6 months."""
    lithium = events.filter(pl.col("code").is_in(_codes("lithium").implode())
                            & pl.col("event_date").is_between(date(2024, 8, 29), R))  # R - 6 months + 1 day
    by_lithium = people.filter("registered").join(lithium.select("patient_id"), on="patient_id", how="semi")
    return pl.concat([_register(events, people, "mh_cod", "smhres"), by_lithium]).unique("patient_id")


def _in_window(events: pl.DataFrame, *ids: str) -> pl.DataFrame:
    return events.filter(pl.col("code").is_in(_codes(*ids).implode()) & pl.col("event_date").is_between(W0, R))


# The BP reading rule (DOMAIN.md section 4), restated here on its own: per kind, the day's
# lowest valid systolic (>= 50) and diastolic (>= 20); a day is a reading when one kind has both.
BP_KINDS = {"clinic": (("bp_systolic_clinic",), ("bp_diastolic_clinic",), 0),
            "home": (("bp_systolic_out_of_office",), ("bp_diastolic_out_of_office", "homebp_diastolic_average"), 5)}


def _bp_days(events: pl.DataFrame) -> pl.DataFrame:
    """Return patient_id, event_date and per kind its lowest valid systolic / diastolic, on days with a valid pair."""
    window = events.filter(pl.col("event_date").is_between(W0, R))
    days = None
    for kind, (systolic, diastolic, _) in BP_KINDS.items():
        sys = window.filter(pl.col("code").is_in(_codes(*systolic).implode()) & (pl.col("value") >= 50))
        dia = window.filter(pl.col("code").is_in(_codes(*diastolic).implode()) & (pl.col("value") >= 20))
        pairs = (sys.group_by("patient_id", "event_date").agg(pl.col("value").min().alias(f"{kind}_sys"))
                 .join(dia.group_by("patient_id", "event_date").agg(pl.col("value").min().alias(f"{kind}_dia")),
                       on=["patient_id", "event_date"]))
        days = pairs if days is None else days.join(pairs, on=["patient_id", "event_date"], how="full", coalesce=True)
    return days


def _by_group(frame: pl.DataFrame, flag: str) -> dict:
    return {
        g: (frame.filter(pl.col("group") == g).height, int(frame.filter(pl.col("group") == g)[flag].sum()))
        for g in ("core20", "rest")
    }


def test_files_match_the_input_contracts(extract):
    assert extract["patients"].schema == pl.Schema(INPUT_PATIENTS.schema)
    assert extract["events"].schema == pl.Schema(INPUT_EVENTS.schema)
    assert extract["patients"]["patient_id"].n_unique() == N
    assert set(extract["patients"]["sex"].unique()) <= set(INPUT_PATIENTS.column("sex").allowed)
    assert extract["events"]["code"].str.contains(r"^[0-9]{6,18}$").all()
    manifest = json.loads((extract["dir"] / "extract.json").read_text())
    assert manifest["reporting_month"] == "2025-02-01"
    feeds = {name: pl.read_parquet(extract["dir"] / f"{name}.parquet") for name in FEEDS}
    assert manifest["row_counts"] == {"patients": N, "events": extract["events"].height, **{k: f.height for k, f in feeds.items()}}
    for name, frame in feeds.items():
        assert frame.schema == pl.Schema(FEEDS[name].table.schema), name
        assert frame.height > 0, name


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(extract, tmp_path):
    generate_extract(tmp_path / "again", reporting_month=MONTH, n_patients=N, seed=7, defect_rate=0.05)
    for name in ("patients.parquet", "events.parquet", "ground_truth.json", *(f"{feed}.parquet" for feed in FEEDS)):
        assert (tmp_path / "again" / name).read_bytes() == (extract["dir"] / name).read_bytes(), name
    generate_extract(tmp_path / "other", reporting_month=MONTH, n_patients=N, seed=8, defect_rate=0.05)
    other = pl.read_parquet(tmp_path / "other" / "patients.parquet")
    assert not other.equals(extract["patients"])


def test_postcodes_are_live_postcodes_of_the_icb_except_the_defects(extract, people):
    lsoas = loader.read_lsoa11_icb22().filter(pl.col("icb22_code_nhs") == "QT1")["lsoa11_code"]
    live = loader.scan_postcode_lsoa11().filter(pl.col("date_terminated").is_null()).select("postcode").collect()["postcode"]
    defects = extract["truth"]["defects"]
    in_icb = (people["lsoa11_code"].is_in(lsoas.implode()) & people["pc"].is_in(live.implode())).fill_null(False)
    assert people.filter(~in_icb).height == defects["blank_postcode"] + defects["invalid_postcode"] + defects["non_english_postcode"]
    foreign = people.filter(pl.col("country_code").is_not_null() & ~pl.col("country_code").str.starts_with("E92"))
    assert foreign.height == defects["non_english_postcode"] > 0
    assert foreign["pc"].is_in(live.implode()).all()
    blank = people.filter(pl.col("postcode").is_null() | (pl.col("postcode").str.strip_chars() == ""))
    assert blank.height == defects["blank_postcode"] > 0
    # Invalid ones are present but not the shape of a postcode at all.
    assert people.filter(pl.col("pc").is_null()).height == defects["blank_postcode"] + defects["invalid_postcode"]
    # Formatting varies (case, spacing) without being a defect.
    assert people.filter(in_icb & (pl.col("postcode") != pl.col("pc"))).height > 0


def test_practices_are_active_practices_of_the_icb_at_their_real_relative_sizes(extract):
    active = loader.read_gp_practices().filter((pl.col("icb_code") == "QT1") & pl.col("is_active"))["practice_code"]
    sizes = dict(loader.read_gp_list_sizes().iter_rows())
    truth = extract["truth"]["practices"]
    written = dict(extract["patients"].group_by("practice_code").len().iter_rows())
    assert set(written) <= set(active)
    # Practices with no January 2021 list size register nobody, and the truth names them.
    assert set(truth["without_list_size"]) == {code for code in active if code not in sizes}
    assert not set(written) & set(truth["without_list_size"])
    # Every practice holds its real list size times one common scale, to within one patient,
    # and for 3,000 patients that scale is near 1: practices about their real size.
    scale = N / sum(sizes[code] for code in written)
    assert truth["scale"] == pytest.approx(scale)
    assert 0.8 <= scale <= 1.25
    for code, n in written.items():
        assert abs(n - sizes[code] * scale) < 1, code
        assert truth["practices"][code] == {"list_size_2021_01": sizes[code], "n_patients": n}
    assert len(truth["practices"]) == truth["n_practices"] == len(written)
    # One of the ICB's smallest tenth of practices is always there (QT1: 3,808 patients or fewer).
    icb_sizes = sorted(sizes[code] for code in active if code in sizes)
    assert min(sizes[code] for code in written) <= icb_sizes[int(0.1 * (len(icb_sizes) - 1))] + 1


def test_practice_plans_keep_real_sizes_and_the_icb_mix():
    """Practice plans at the demo's, the benchmark's and a larger-than-the-ICB size (no events drawn)."""
    import numpy as np

    from pipelines.synthetic.practices import load_practices, plan_practices
    from pipelines.synthetic.reference import load_reference

    practices = load_practices(load_reference("QT1", None), "QT1", None)
    core20, minority = practices.share(practices.core20_share), practices.share(practices.minority_share)
    assert practices.total_list_size == loader.read_gp_list_sizes().filter(pl.col("practice_code").is_in(practices.codes.implode()))["list_size"].sum()
    small = np.quantile(practices.list_size, 0.1)
    for seed in range(20):
        plan = plan_practices(np.random.default_rng(seed), practices, 20_000)
        assert plan.n_patients.sum() == 20_000
        assert 2 <= plan.chosen.size <= 6 and 0.85 <= plan.scale <= 1.2, seed
        # Balanced: the chosen practices' catchments look like the ICB's, not one neighbourhood's.
        assert abs(practices.share(practices.core20_share, plan.chosen) - core20) < 0.035, seed
        assert abs(practices.share(practices.minority_share, plan.chosen) - minority) < 0.035, seed
        assert practices.list_size[plan.chosen].min() <= small, seed
        again = plan_practices(np.random.default_rng(seed), practices, 20_000)
        assert again.chosen.tolist() == plan.chosen.tolist() and again.n_patients.tolist() == plan.n_patients.tolist()
    plan = plan_practices(np.random.default_rng(1), practices, 1_000_000)
    assert plan.chosen.size >= 90 and 0.97 <= plan.scale <= 1.03
    # More patients than the ICB registers: every practice, all scaled alike.
    plan = plan_practices(np.random.default_rng(1), practices, 5_000_000)
    assert plan.chosen.size == practices.codes.len() and plan.n_patients.sum() == 5_000_000
    assert np.abs(plan.n_patients - practices.list_size * 5_000_000 / practices.total_list_size).max() < 1


def test_register_counts_match_an_independent_recomputation(extract, people):
    registers = extract["truth"]["registers"]
    assert _smi_register(extract["events"], people).height == registers["smi_register"]["n_registered"] > 0
    # Lithium in the last 6 months puts some on it without a diagnosis; older lithium does not.
    by_diagnosis = _register(extract["events"], people, "mh_cod", "smhres")
    assert _smi_register(extract["events"], people).height > by_diagnosis.height
    assert _register(extract["events"], people, "hyp_cod", "hypres_cod").height == registers["hypertension_register"]["n_registered"] > 0
    for register_id, diagnosis, resolved in (
        ("asthma_register", "ast_cod", "astres_cod"),
        ("copd_register", "copd_cod", "copdres_cod"),
        ("diabetes_register", "dm_cod", "dmres_cod"),
        ("epilepsy_register", "epil_cod", "epilres_cod"),
    ):
        assert _register(extract["events"], people, diagnosis, resolved).height == registers[register_id]["n_registered"], register_id
    for register_id, diagnosis in (("ld_register", "ld_cod_20241205"), ("autism", "autism_cod")):
        coded = extract["events"].filter(pl.col("code").is_in(_codes(diagnosis).implode()))
        assert people.filter("registered").join(coded, on="patient_id", how="semi").height == registers[register_id]["n_registered"], register_id
    # Resolution matters: some patients have a diagnosis but are off the register.
    assert registers["hypertension_register"]["n_resolved_off_register"] > 0


def test_deregistered_patients_are_in_the_extract_but_not_registered(extract, people):
    ended = people.filter(pl.col("registration_end_date").is_not_null())
    assert ended.height == extract["truth"]["n_deregistered_before_reference_date"] > 0
    assert (ended["registration_end_date"] <= R).all()
    assert (people["registration_start_date"] <= R).all()
    assert (extract["events"]["event_date"] <= R).all()


def test_smi_health_check_numerator_matches_ground_truth(extract, people):
    ev = extract["events"]
    denom = _smi_register(ev, people).filter(pl.col("age") >= 18)
    components = [
        ("cholesterol_tests",),
        ("hba1c_tests", "ifcchbam_cod"),
        ("lsmok_cod", "exsmok_cod", "smoking_never", "smoking_ex", "smoking_current"),
        ("bmival_cod", "bmiobese_cod", "bmi_stage", "weight_snomed"),
        ("alcohol_consumption_gmsde",),
    ]
    flags = [pl.col("patient_id").is_in(_in_window(ev, *ids)["patient_id"].implode()) for ids in components]
    flags.append(pl.col("patient_id").is_in(_bp_days(ev)["patient_id"].implode()))
    scored = denom.with_columns(pl.all_horizontal(flags).alias("met"))
    truth = extract["truth"]["indicators"]["smi_health_check"]
    for group, (n_den, n_num) in _by_group(scored, "met").items():
        assert (n_den, n_num) == (truth[group]["n_denominator"], truth[group]["realised_numerator"]), group


def test_hypertension_treated_to_target_matches_ground_truth(extract, people):
    ev = extract["events"]
    denom = _register(ev, people, "hyp_cod", "hypres_cod").filter(pl.col("age") >= 18)

    latest = _bp_days(ev).filter(pl.col("event_date") == pl.col("event_date").max().over("patient_id"))
    scored = denom.join(latest, on="patient_id", how="left").with_columns(
        pl.when(pl.col("age") >= 80).then(150).otherwise(140).alias("limit")
    ).with_columns(
        pl.any_horizontal(
            (pl.col(f"{kind}_sys") <= pl.col("limit") - shift) & (pl.col(f"{kind}_dia") <= 90 - shift)
            for kind, (_, _, shift) in BP_KINDS.items()
        ).fill_null(False).alias("met"),
        pl.coalesce("clinic_sys", "home_sys").alias("sys"),
        pl.coalesce("clinic_dia", "home_dia").alias("dia"),
    )
    truth = extract["truth"]["indicators"]["hypertension_treated_to_target"]
    for group, (n_den, n_num) in _by_group(scored, "met").items():
        assert (n_den, n_num) == (truth[group]["n_denominator"], truth[group]["realised_numerator"]), group
    # The injected gap is the documented one: Core20's expected rate is lower.
    assert truth["gap_core20_vs_rest"] == pytest.approx(truth["core20"]["expected_rate"] - truth["rest"]["expected_rate"])
    assert truth["gap_core20_vs_rest"] < 0
    # Thresholds bite: readings exactly at 140/90 exist, and some 80+ pass only on 150.
    assert scored.filter(pl.col("met") & ((pl.col("sys") == 140) | (pl.col("dia") == 90))).height > 0
    assert scored.filter(pl.col("met") & (pl.col("sys") > 140)).height > 0
    # Home readings decide for some, and rows that are no valid reading were written after
    # the deciding day (invalid values, a lone systolic, a maximum): the rule must skip them.
    assert scored.filter(pl.col("home_sys").is_not_null()).height > 0
    later = ev.filter(pl.col("code").is_in(_codes("systolic_blood_pressure_qof").implode())).join(
        latest.select("patient_id", pl.col("event_date").alias("decided")), on="patient_id").filter(
        pl.col("event_date").is_between(pl.col("decided"), R, closed="right"))
    assert later.height > 0


def test_ethnicity_and_duplicate_counts_match_ground_truth(extract):
    ev = extract["events"]
    truth = extract["truth"]
    coded = ev.filter(pl.col("code").is_in(_codes("ethnicity_snomed").implode()))["patient_id"].unique()
    unstated = ev.filter(pl.col("code").is_in(_codes("eth_not_stated").implode()))
    only_unstated = unstated.filter(~pl.col("patient_id").is_in(coded.implode()))
    not_known = only_unstated.filter(pl.col("code") == "312861003")["patient_id"].unique()
    assert coded.len() == truth["ethnicity"]["n_coded"]
    assert only_unstated["patient_id"].n_unique() - not_known.len() == truth["ethnicity"]["n_not_stated"] > 0
    assert not_known.len() == truth["ethnicity"]["n_not_known"] > 0
    # Coded patients with a LATER unstated code: the valid code still decides.
    later = unstated.join(ev.filter(pl.col("code").is_in(_codes("ethnicity_snomed").implode()))
                          .group_by("patient_id").agg(pl.col("event_date").max().alias("valid")), on="patient_id")
    assert later.filter(pl.col("event_date") > pl.col("valid"))["patient_id"].n_unique() == truth["ethnicity"]["n_later_unstated_code"] > 0
    assert N - coded.len() - only_unstated["patient_id"].n_unique() == truth["ethnicity"]["n_no_code"]
    assert truth["defects"]["missing_ethnicity"] > 0
    # Latest code wins: patients with two different codes exist (superseded ones).
    multi = ev.filter(pl.col("code").is_in(_codes("ethnicity_snomed").implode())).group_by("patient_id").agg(pl.col("code").n_unique())
    assert multi.filter(pl.col("code") > 1).height == truth["ethnicity"]["n_superseded_code"] > 0
    assert ev.height - ev.unique().height == truth["defects"]["duplicate_event_rows"] > 0


def test_default_reporting_month_is_the_last_complete_month():
    assert default_reporting_month(date(2026, 3, 31)) == date(2026, 2, 1)
    assert default_reporting_month(date(2026, 1, 1)) == date(2025, 12, 1)


def test_reporting_month_must_be_a_first_day(tmp_path):
    with pytest.raises(ValueError, match="first day"):
        generate_extract(tmp_path, reporting_month=date(2025, 2, 15), n_patients=10)


def test_gap_breakdowns_use_the_recorded_ethnicity_and_are_consistent(extract, people):
    # Recompute the broad group the pipeline will see from the written events alone: the
    # latest VALID ethnicity code's grouping_6; without one, 'Not known' when the latest
    # unstated code is "Ethnic group not recorded", else 'Not stated'; 'unknown' for none.
    stated = loader.read_codelist("ethnicity_snomed").select("code", pl.col("grouping_6").cast(pl.String))
    labels = {"1": "White", "2": "Mixed", "3": "Asian or Asian British", "4": "Black or Black British", "5": "Other ethnic group"}
    coded = extract["events"].join(stated, on="code", how="left").filter(
        pl.col("grouping_6").is_not_null() | pl.col("code").is_in(_codes("eth_not_stated").implode())
    ).with_columns(
        pl.col("grouping_6").is_null().alias("unstated"),
        pl.when(pl.col("code") == "312861003").then(pl.lit("Not known")).otherwise(pl.lit("Not stated")).alias("unstated_label"),
    ).filter(pl.col("unstated") == pl.col("unstated").min().over("patient_id"))
    latest = coded.filter(pl.col("event_date") == pl.col("event_date").max().over("patient_id")).select(
        "patient_id", pl.coalesce(pl.col("grouping_6").replace_strict(labels, default=None), "unstated_label").alias("ethnicity")
    ).unique()
    assert latest["patient_id"].is_unique().all()
    denominator = _register(extract["events"], people, "hyp_cod", "hypres_cod").filter(pl.col("age") >= 18)
    observed = dict(
        denominator.join(latest, on="patient_id", how="left").group_by(pl.col("ethnicity").fill_null("unknown")).len().rows()
    )
    for name, entry in extract["truth"]["indicators"].items():
        if "expected_rate" not in entry["all_patients"]:
            assert "breakdowns" not in entry, name
            continue
        breakdowns = entry["breakdowns"]
        assert set(breakdowns) == {"core20", "ethnicity_broad"}, name
        assert (breakdowns["core20"]["reference_group"], breakdowns["ethnicity_broad"]["reference_group"]) == ("rest", "White")
        # Core20 is the latent Core20 seen through a usable postcode; the gap table's 'rest' is
        # everyone else (a blank, invalid or non-English postcode included), not the latent 'rest'.
        assert breakdowns["core20"]["groups"]["core20"] == entry["core20"], name
        rest = breakdowns["core20"]["groups"]["rest"]
        assert rest["n_denominator"] == entry["all_patients"]["n_denominator"] - entry["core20"]["n_denominator"], name
        assert rest["n_denominator"] >= entry["rest"]["n_denominator"], name
        for breakdown in breakdowns.values():
            groups = breakdown["groups"]
            # The groups partition the denominator, so their expected rates average to the overall one.
            assert sum(g["n_denominator"] for g in groups.values()) == entry["all_patients"]["n_denominator"], name
            assert sum(g["realised_numerator"] for g in groups.values()) == entry["all_patients"]["realised_numerator"], name
            expected = sum(g["expected_rate"] * g["n_denominator"] for g in groups.values() if g["n_denominator"])
            assert expected == pytest.approx(entry["all_patients"]["expected_rate"] * entry["all_patients"]["n_denominator"])
            reference = groups[breakdown["reference_group"]]
            assert set(breakdown["gaps"]) <= set(groups) - {breakdown["reference_group"], "unknown", "Not stated", "Not known"}
            for label, gap in breakdown["gaps"].items():
                assert gap["expected_gap"] == pytest.approx(groups[label]["expected_rate"] - reference["expected_rate"])
                assert gap["expected_gap_sd"] > 0
    ethnicity = extract["truth"]["indicators"]["hypertension_treated_to_target"]["breakdowns"]["ethnicity_broad"]
    assert {g: v["n_denominator"] for g, v in ethnicity["groups"].items() if v["n_denominator"]} == observed
    # The injected ethnicity multipliers show through: Black patients' expected rate is the lowest.
    assert ethnicity["gaps"]["Black or Black British"]["expected_gap"] < ethnicity["gaps"]["Mixed"]["expected_gap"] < 0
