"""The whole monthly job, through the `core20` command, on a small generated extract."""

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipelines import cli
from pipelines.synthetic import generate_extract
from pipelines.warehouse import connect, read_table
from pipeline_helpers import patient_values, published_state

MONTH = dt.date(2026, 10, 1)
INDICATORS = ("smi_health_check", "hypertension_treated_to_target")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Generate an extract, run the month once, and return (root, warehouse, ground truth, output)."""
    root = tmp_path_factory.mktemp("core20")
    truth = generate_extract(root / "extracts" / "2026-10", reporting_month=MONTH, n_patients=12_000, seed=11)
    warehouse = root / "warehouse.duckdb"
    code, output = run_cli(root / "extracts", warehouse)
    assert code == 0, output
    return root, warehouse, truth, output


def run_cli(extracts: Path, warehouse: Path, *extra: str) -> tuple[int, str]:
    """Run `core20 run` in a subprocess (as an analyst would) and return its exit code and output."""
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--extract", str(extracts), "--warehouse", str(warehouse), *extra],
        capture_output=True, text=True, env={**__import__("os").environ, "DAGSTER_HOME": ""},
    )
    return done.returncode, done.stdout + done.stderr


def published(warehouse: Path) -> pl.DataFrame:
    with connect(warehouse, read_only=True) as con:
        return read_table(con, "published", "gap_table")


def test_published_gap_table_covers_both_indicators_quintiles_and_core20(run):
    _, warehouse, _, _ = run
    table = published(warehouse).filter(pl.col("reporting_month") == MONTH)
    assert set(table["indicator_id"]) >= set(INDICATORS)
    for indicator in INDICATORS:
        for vintage in ("IMD2019", "IMD2025"):
            rows = table.filter(indicator_id=indicator, imd_vintage=vintage)
            quintiles = set(rows.filter(breakdown="imd_quintile")["group"])
            assert {"1", "2", "3", "4", "5"} <= quintiles, (indicator, vintage, quintiles)
            assert {"core20", "rest"} <= set(rows.filter(breakdown="core20")["group"])


def test_inequality_and_spc_tables_are_published_with_seed_and_draws(run):
    _, warehouse, _, _ = run
    with connect(warehouse, read_only=True) as con:
        indices = read_table(con, "published", "inequality_table")
        spc = read_table(con, "published", "spc_series")
    computed = indices.filter(pl.col("status") == "computed")
    # Deciles and quintiles of the primary vintage (IMD 2025) at least; the other vintage's
    # quantiles may be hidden by secondary suppression at 12,000 patients (their status says so).
    htn = indices.filter(indicator_id="hypertension_treated_to_target")
    assert htn.height == 4 and set(computed.filter(indicator_id="hypertension_treated_to_target")["imd_vintage"]) >= {"IMD2025"}
    assert htn.filter(pl.col("status") != "computed")["status"].str.starts_with("not computed").all()
    assert (computed["repetitions"] == 100000).all() and computed["seed"].null_count() == 0
    assert (computed["sii_lower"] <= computed["sii"]).all() and (computed["sii"] <= computed["sii_upper"]).all()
    # The generator makes Core20 worse: the least deprived end is higher, so the SII is positive.
    quintile = computed.filter(indicator_id="hypertension_treated_to_target", imd_vintage="IMD2025",
                               quantile_type="imd_quintile").row(0, named=True)
    assert quintile["sii"] > 0 and quintile["rii"] > 1
    assert set(spc["breakdown"]) <= {"overall", "core20"} and spc.height > 0
    assert spc["is_short_series"].all()  # one month published so far


@pytest.fixture(scope="module")
def private_month(run):
    """The month's private inputs to the gap table and the published gap table, read once."""
    _, warehouse, _, _ = run
    with connect(warehouse, read_only=True) as con:
        frames = {t: read_table(con, s, t, partition_column="reporting_month", partition_value=MONTH) for s, t in (
            ("indicators", "patient_indicators"), ("population", "patient_attributes"),
            ("indicators", "indicator_catalogue"), ("cohorts", "cohort_membership"), ("cohorts", "cohort_catalogue"),
            ("population", "patient_deprivation"), ("staging", "patients"), ("population", "deprivation_quality"))}
        frames["published"] = read_table(con, "published", "gap_table").filter(pl.col("reporting_month") == MONTH)
        frames["published_quality"] = read_table(con, "published", "deprivation_quality").filter(
            pl.col("reporting_month") == MONTH)
    return frames


def _gap_inputs(frames: dict, patient_indicators: pl.DataFrame, deprivation: pl.DataFrame) -> dict:
    """Return build_gap_table's arguments as the audit/gap_table asset passes them (assets/gaps.py)."""
    from pipelines.segmentation.cohorts import published_intersections, reported_cohorts
    from pipelines.segmentation.definitions import load_definitions

    with_practice = deprivation.join(frames["patients"].select("patient_id", "practice_code"), on="patient_id", how="left")
    reported = reported_cohorts(frames["cohort_membership"], frames["cohort_catalogue"])
    return {"indicator_results": patient_indicators.lazy(), "attributes": frames["patient_attributes"].lazy(),
            "catalogue": frames["indicator_catalogue"], "cohorts": reported.lazy(),
            "intersections": published_intersections(load_definitions(), reported),
            "primary_vintage": "IMD2025", "deprivation": with_practice.lazy(), "quality": frames["deprivation_quality"]}


def test_published_gap_table_resists_recovery_by_subtraction(private_month):
    # Rebuild the month without disclosure control from the private layer, then let the
    # attacker try every hidden count of the published table.
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from attack import recovered_cells
    from pipelines.segmentation.disclosure import NONE
    from pipelines.segmentation.gaps import build_gap_table

    table, attributes = private_month["published"], private_month["patient_attributes"]
    inputs = _gap_inputs(private_month, private_month["patient_indicators"], private_month["patient_deprivation"])
    truth = build_gap_table(**{**inputs, "deprivation": None, "quality": None}, profile=NONE)
    fine = {
        "ethnicity_16": dict(attributes.select("ethnicity_16", "ethnicity_broad").drop_nulls().unique().rows()),
        "sub_icb": dict(attributes.select("sicbl_code", "icb_code").drop_nulls().unique().rows()),
    }
    assert table["is_suppressed"].sum() > 50
    assert recovered_cells(table, truth, fine) == []


def test_rebuilding_the_month_in_any_row_order_hides_the_same_cells(private_month):
    # The suppression audit's LPs can have several optima; which one is found must not follow
    # the order in which rows arrive, or a re-run of a month would hide other cells. The gap
    # table and deprivation quality are protected together (with the identities between their
    # populations), so both are rebuilt, from the same inputs the asset uses, patients shuffled.
    from pipelines.segmentation.gaps import build_gap_table

    key = ["indicator_id", "imd_vintage", "breakdown", "group"]
    hidden = set(private_month["published"].filter("is_suppressed").select(key).rows())
    published_quality = private_month["published_quality"]
    for seed in (1, 2):
        shuffled = private_month["patient_indicators"].sample(fraction=1.0, shuffle=True, seed=seed)
        deprivation = private_month["patient_deprivation"].sample(fraction=1.0, shuffle=True, seed=seed)
        figures: dict = {}
        rebuilt = build_gap_table(**_gap_inputs(private_month, shuffled, deprivation), audit_stats=figures)
        assert set(rebuilt.filter("is_suppressed").select(key).rows()) == hidden
        assert figures["quality"].equals(published_quality.select(figures["quality"].columns))


def test_the_whole_extract_match_rate_is_published_from_the_controlled_counts(private_month):
    # The shown branch of the one match-rate definition on a whole month (the hidden branch:
    # tests/spec/test_deprivation_quality.py, as literal tables): patients with a decile /
    # patients with an address IMD can apply to.
    published = private_month["published_quality"].filter(practice_code="ALL").sort("imd_vintage")
    exact = private_month["deprivation_quality"].filter(practice_code="ALL").sort("imd_vintage")
    assert published["imd_vintage"].to_list() == exact["imd_vintage"].to_list() == ["IMD2019", "IMD2025"]
    for shown, true in zip(published.iter_rows(named=True), exact.iter_rows(named=True)):
        assert None not in (shown["n_matched"], shown["n_patients"], shown["n_blank"], shown["n_outside_england"])
        with_address = shown["n_patients"] - shown["n_blank"] - shown["n_outside_england"]
        assert shown["match_rate"] == shown["n_matched"] / with_address
        assert abs(shown["match_rate"] - true["match_rate"]) < 0.005 and true["match_rate"] > 0.95


def test_summary_names_the_figures_and_no_patient_values(run):
    root, warehouse, _, output = run
    assert "registered patients" in output and "Core20" in output and str(warehouse) in output
    for value in patient_values(root / "extracts" / "2026-10"):
        assert value not in output


def test_blocked_run_leaves_published_tables_unchanged_and_a_good_run_then_publishes(run, tmp_path):
    root, warehouse, _, _ = run
    warehouse_copy = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse, warehouse_copy)
    before = published_state(warehouse_copy)
    # A September extract in which 5% of dates of birth are impossible: more rows than the
    # quarantine may set aside (1%), so the input gate blocks it.
    good = tmp_path / "good" / "2026-09"
    generate_extract(good, reporting_month=dt.date(2026, 9, 1), n_patients=12_000, seed=12)
    bad = tmp_path / "extracts" / "2026-09"
    shutil.copytree(good, bad)
    patients = pl.read_parquet(good / "patients.parquet")
    patients.with_columns(
        pl.when(pl.int_range(pl.len()) < 600).then(pl.lit(dt.date(1850, 1, 1))).otherwise(pl.col("date_of_birth")).alias("date_of_birth")
    ).write_parquet(bad / "patients.parquet")

    code, output = run_cli(tmp_path / "extracts", warehouse_copy, "--month", "2026-09")
    assert code == 2, output
    assert "staging/patients:input_contract blocked" in output and "date_of_birth_implausible 600" in output
    assert "previously published tables are unchanged" in output
    assert published_state(warehouse_copy) == before  # every published table, byte for byte

    shutil.copy(good / "patients.parquet", bad / "patients.parquet")
    code, output = run_cli(tmp_path / "extracts", warehouse_copy, "--month", "2026-09")
    assert code == 0, output
    months = set(published(warehouse_copy)["reporting_month"])
    assert months == {MONTH, dt.date(2026, 9, 1)}


def test_rerunning_a_month_gives_identical_published_rows(run):
    root, warehouse, _, _ = run
    before = published(warehouse).sort(["indicator_id", "imd_vintage", "breakdown", "group"])
    every_table = published_state(warehouse)
    code, output = run_cli(root / "extracts", warehouse, "--month", "2026-10")
    assert code == 0, output
    after = published(warehouse).sort(["indicator_id", "imd_vintage", "breakdown", "group"])
    assert after.equals(before)
    assert published_state(warehouse) == every_table  # the catalogue and data-quality rows too


def test_missing_extract_is_a_clear_error(tmp_path):
    code, output = run_cli(tmp_path / "nothing", tmp_path / "w.duckdb")
    assert code == 1
    assert "no extracts found under" in output


def test_incomplete_month_is_refused(tmp_path):
    next_month = (dt.date.today().replace(day=1) + dt.timedelta(days=32)).strftime("%Y-%m")
    code, output = run_cli(tmp_path, tmp_path / "w.duckdb", "--month", next_month)
    assert code == 1
    assert "is not a reporting month that can run" in output


def test_dagster_loads_the_code_location():
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=repo, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- the indicator library, the audit trail, explain and diff-definitions (issue 4) -------------

FEED_INDICATORS = {"maternity_continuity_of_carer", "cancer_early_stage", "cyp_tooth_extractions", "cyp_mental_health_access"}


def query(warehouse: Path, sql: str, params: list | None = None) -> pl.DataFrame:
    with connect(warehouse, read_only=True) as con:
        return pl.from_arrow(con.sql(sql, params=params or []).to_arrow_table())


def test_gap_table_has_rows_for_every_available_indicator_and_none_for_the_rest(run):
    _, warehouse, _, _ = run
    catalogue = query(warehouse, "select * from published.indicator_catalogue where reporting_month = $1", [MONTH])
    available = set(catalogue.filter("is_available")["indicator_id"])
    unavailable = catalogue.filter(~pl.col("is_available"))
    assert FEED_INDICATORS <= available and len(available) == 26  # issue 14: SMI BMI and alcohol, CYP epilepsy review, 4 screening
    assert all(unavailable["not_available_reason"].is_not_null())
    in_gap_table = set(published(warehouse).filter(pl.col("reporting_month") == MONTH)["indicator_id"])
    assert in_gap_table == available


def test_audit_trail_is_in_the_warehouse_without_patient_values(run):
    root, warehouse, _, _ = run
    usage = query(warehouse, "select * from lineage.definition_usage where reporting_month = $1", [MONTH])
    registry = query(warehouse, "select * from lineage.definitions_registry")
    manifest = query(warehouse, "select * from lineage.run_manifest where reporting_month = $1", [MONTH])
    attrition = query(warehouse, "select * from lineage.attrition where reporting_month = $1", [MONTH])
    assert set(usage["definition_kind"]) == {"register", "cohort", "indicator", "ics"}
    assert registry.filter(pl.col("definition_id") == "smi_health_check")["first_month_used"].to_list() == [MONTH]
    assert {"definition", "codelist", "reference_file", "feed", "setting", "code"} == set(manifest["item_type"])
    # Attrition ends where the private per-patient results end.
    results = query(warehouse, "select * from indicators.patient_indicators where reporting_month = $1 and "
                               "indicator_id = 'smi_health_check'", [MONTH])
    steps = attrition.filter(pl.col("definition_id") == "smi_health_check").sort("step")
    assert steps.filter(pl.col("stage") == "denominator")["n_kept"].to_list()[-1] == results.height
    assert steps["n_kept"].to_list()[-1] == int(results["is_numerator"].sum())
    patients = pl.read_parquet(root / "extracts" / "2026-10" / "patients.parquet")
    text = " ".join(str(v) for frame in (usage, registry, manifest, attrition) for row in frame.rows() for v in row)
    assert not any(pid in text for pid in patients["patient_id"].to_list())


def run_command(*args: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          env={**__import__("os").environ, "DAGSTER_HOME": ""})
    return done.returncode, done.stdout, done.stderr


def _registered_events(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (registered patients, their events up to R) read straight from the extract files."""
    r = dt.date(2026, 10, 31)
    patients = pl.read_parquet(root / "extracts" / "2026-10" / "patients.parquet").filter(
        (pl.col("registration_start_date") <= r) & (pl.col("registration_end_date").is_null() | (pl.col("registration_end_date") > r))
    )
    events = pl.read_parquet(root / "extracts" / "2026-10" / "events.parquet").filter(pl.col("event_date") <= r)
    return patients, events.join(patients.select("patient_id"), on="patient_id", how="semi")


def test_explain_names_the_deciding_code_and_date_for_a_generated_patient(run):
    from reference_data.loader import read_codelist

    root, warehouse, _, _ = run
    _, events = _registered_events(root)
    dx, res = (read_codelist(c)["code"] for c in ("mh_cod", "smhres"))
    latest = events.filter(pl.col("code").is_in(dx.implode())).group_by("patient_id").agg(pl.col("event_date").max().alias("dx"))
    resolved = events.filter(pl.col("code").is_in(res.implode()))["patient_id"].unique()
    patient_id, day = latest.filter(~pl.col("patient_id").is_in(resolved.implode())).sort("patient_id").row(0)
    codes_that_day = events.filter((pl.col("patient_id") == patient_id) & (pl.col("event_date") == day) & pl.col("code").is_in(dx.implode()))["code"]
    before = warehouse.read_bytes()
    code, out, err = run_command("explain", "--patient", patient_id, "--month", "2026-10", "--warehouse", str(warehouse))
    assert code == 0, err
    assert out.startswith("core20 explain: patient-level output for this console only")
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  IN   smi_register v2"))  # v2: lithium too
    assert f"on {day}" in lines[at + 1] and any(f"latest {c} (" in lines[at + 1] for c in codes_that_day)
    assert any(line.startswith("  IN   smi v1") for line in lines)
    assert warehouse.read_bytes() == before  # console only: nothing written
    code, out, err = run_command("explain", "--patient", "not-a-patient", "--month", "2026-10", "--warehouse", str(warehouse))
    assert code == 1 and "no patient registered in 2026-10 has that id" in err and "not-a-patient" not in err + out


def test_diff_definitions_shows_the_movers_when_one_code_is_removed(run, tmp_path):
    import hashlib
    import re

    from reference_data.loader import read_codelist, verified_path

    root, warehouse, _, _ = run
    patients, events = _registered_events(root)
    hyp, hypres = read_codelist("hyp_cod")["code"], read_codelist("hypres_cod")["code"]
    used = events.filter(pl.col("code").is_in(hyp.implode())).group_by("code").len().sort(["len", "code"], descending=[True, False])
    removed = used["code"][0]

    def on_register(codes: pl.Series) -> set[str]:
        dx = events.filter(pl.col("code").is_in(codes.implode())).group_by("patient_id").agg(pl.col("event_date").max().alias("dx"))
        rs = events.filter(pl.col("code").is_in(hypres.implode())).group_by("patient_id").agg(pl.col("event_date").max().alias("rs"))
        on = dx.join(rs, on="patient_id", how="left").filter(pl.col("rs").is_null() | (pl.col("dx") > pl.col("rs")))
        return set(on["patient_id"])

    before, after = on_register(hyp), on_register(hyp.filter(hyp != removed))
    assert len(before - after) > 0 and not after - before

    new = tmp_path / "definitions"
    shutil.copytree(Path(__file__).resolve().parents[2] / "reference_data" / "definitions", new)
    text = "".join(line for line in verified_path("hyp_cod").read_text().splitlines(keepends=True) if not line.startswith(removed + ","))
    (new / "hyp_cod.csv").write_text(text)
    sha = hashlib.sha256(text.encode()).hexdigest()
    (new / "codelists.yaml").write_text(
        f"codelists:\n  hyp_cod:\n    path: hyp_cod.csv\n    sha256: {sha}\n    source: test - one code removed\n    version: test\n"
    )
    code, out, err = run_command("diff-definitions", str(Path(__file__).resolve().parents[2] / "reference_data" / "definitions"),
                                 str(new), "--month", "2026-10", "--warehouse", str(warehouse))
    assert code == 0, err
    block = out.split("register hypertension_register: changed\n", 1)[1]
    numbers = re.match(r"\s+members\s+([\d,]+) ->\s+([\d,]+)\s+entered\s+(\d+)\s+left\s+([\d,]+)", block)
    assert numbers is not None, out
    n_old, n_new, entered, left = (int(x.replace(",", "")) for x in numbers.groups())
    assert (n_old, n_new, entered, left) == (len(before), len(after), 0, len(before - after))
    assert f"code {removed} (" in block and f"removed from hyp_cod: {len(before - after)} of {len(before - after)} mover(s) have it" in block
    assert "indicator hypertension_treated_to_target: changed" in out
    assert not any(pid in out for pid in patients["patient_id"].to_list())


def test_a_month_without_feeds_reports_their_indicators_as_not_available(run, tmp_path):
    root, warehouse, _, _ = run
    warehouse_copy = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse, warehouse_copy)
    generate_extract(tmp_path / "extracts" / "2026-08", reporting_month=dt.date(2026, 8, 1), n_patients=3_000, seed=12,
                     include_feeds=False)
    code, output = run_cli(tmp_path / "extracts", warehouse_copy, "--month", "2026-08")
    assert code == 0, output
    month = dt.date(2026, 8, 1)
    catalogue = query(warehouse_copy, "select * from published.indicator_catalogue where reporting_month = $1", [month])
    feed_rows = catalogue.filter(pl.col("indicator_id").is_in(list(FEED_INDICATORS)))
    assert feed_rows["is_available"].to_list() == [False] * 4
    assert set(published(warehouse_copy).filter(pl.col("reporting_month") == month)["indicator_id"]) == set(
        catalogue.filter("is_available")["indicator_id"]
    )
    assert not FEED_INDICATORS & set(published(warehouse_copy).filter(pl.col("reporting_month") == month)["indicator_id"])


def _session_over_the_month(con, tables=None):
    """Return the month's planned model, its session over the warehouse (`tables` overriding relations) and the feeds present."""
    from pipelines.resources import PipelineSettings
    from pipelines.segmentation import definitions
    from pipelines.segmentation.cohorts import codelists_from_warehouse
    from pipelines.segmentation.extract import month_end
    from pipelines.segmentation.patient_model import ModelBuilder, ModelSession

    present = read_table(con, "staging", "feed_availability", partition_column="reporting_month",
                         partition_value=MONTH).filter("is_present")["feed"].to_list()
    defs = definitions.load_definitions()
    builder = ModelBuilder(defs, codelists_from_warehouse(con, defs), month_end(MONTH),
                           PipelineSettings().primary_imd_vintage).plan(feeds_present=present)
    ethnicity = pl.from_arrow(con.sql("select * from reference.ethnicity_codes").to_arrow_table())
    return builder, ModelSession.in_warehouse(con, MONTH, present, ethnicity, tables=tables), present


@pytest.mark.parametrize("slice_patients", [997, 4_000])
def test_the_patient_model_built_in_slices_of_patients_is_the_one_query_model(run, slice_patients):
    # A big month's model is written a slice of patient keys at a time (ModelSession.model_sqls);
    # the run above had one slice. Rebuilt here in slices (12,000 patients: 13 and 3 of them),
    # every row must be the run's, and no patient may be missing or repeated.
    _, warehouse, _, _ = run
    with connect(warehouse, read_only=True) as con:
        builder, session, present = _session_over_the_month(con)
        # The month's deprivation and feed rows carry the patients' keys: each slice reads them by its key range.
        assert session.keyed_relations() == {"population.patient_deprivation", *(f'staging."{f}"' for f in present)}
        queries = session.model_sqls(builder, slice_patients)
        sliced = pl.concat([pl.from_arrow(con.sql(q).to_arrow_table()) for q in queries])
        written = read_table(con, "population", "patient_model", partition_column="reporting_month", partition_value=MONTH)
    n_patients = written.height
    assert len(queries) == -(-n_patients // slice_patients) > 1
    assert sliced["patient_id"].n_unique() == sliced.height == n_patients
    columns = written.columns
    assert sliced.select(columns).sort("patient_id").equals(written.sort("patient_id"))


def _sliced_model(con, builder, session, keyed=None, say=None) -> pl.DataFrame:
    """Return the month's model built in slices, sorted by patient: the session's own choice of
    key-read relations (slices of 4,000 patients), or the two slices 1-4,000 and 4,001-20,000
    reading the `keyed` relations by key range whatever their keys (the control: no guard)."""
    queries = (session.model_sqls(builder, 4_000, say=say) if keyed is None else
               [session.model_sql(builder, keys=keys, keyed=keyed) for keys in ((1, 4_000), (4_001, 20_000))])
    return pl.concat([pl.from_arrow(con.sql(q).to_arrow_table()) for q in queries]).sort("patient_id")


def test_a_slice_reads_a_month_of_deprivation_rows_without_keys_by_patient_id(run):
    # A month written before the deprivation table carried the patients' keys has none (or
    # null ones, once a later month added the column): read by a key range, a slice would find
    # none of its patients' rows. The session reads such a month by patient id instead.
    _, warehouse, _, _ = run
    with connect(warehouse, read_only=True) as con:
        con.execute("create temp view _unkeyed as select * replace (NULL::INTEGER as patient_key) "
                    "from population.patient_deprivation")
        builder, session, _ = _session_over_the_month(con, tables={"deprivation": "_unkeyed"})
        said = []
        assert "_unkeyed" not in session.keyed_relations(said.append)
        # A month older than the keys is expected, not stale: nothing to warn the analyst about.
        assert said == []
        by_id, by_null_keys = _sliced_model(con, builder, session), _sliced_model(con, builder, session, frozenset({"_unkeyed"}))
        written = read_table(con, "population", "patient_model", partition_column="reporting_month", partition_value=MONTH)
    assert by_id.select(written.columns).equals(written.sort("patient_id"))
    # The control: the same month read by a key range has no decile for anyone.
    assert written["imd2019_decile"].is_not_null().sum() > 0 and by_null_keys["imd2019_decile"].is_null().all()


def test_a_slice_reads_deprivation_rows_with_stale_keys_by_patient_id_and_says_so(run):
    # Staging re-materialised alone (a changed extract, in the Dagster UI) numbers the month's
    # patients again; a deprivation table written before keeps the old keys. Here every stored
    # key is reversed against staging.patients' (key k stored as n + 1 - k), so a key range
    # finds other patients' rows. The session must see the keys disagree, read the table by
    # patient id (the freshly keyed model's rows exactly) and name the table in a warning.
    _, warehouse, _, _ = run
    with connect(warehouse, read_only=True) as con:
        n = con.execute("select max(patient_key) from staging.patients where reporting_month = $1", [MONTH]).fetchall()[0][0]
        con.execute(f"create temp view _stale as select * replace ({n} + 1 - patient_key as patient_key) "
                    "from population.patient_deprivation")
        builder, session, present = _session_over_the_month(con, tables={"deprivation": "_stale"})
        said = []
        # Only the stale table loses its key reads: the feeds' keys are the staged patients'.
        assert session.keyed_relations(said.append) == {f'staging."{f}"' for f in present}
        assert len(said) == 1 and said[0].startswith("_stale: "), said
        guarded = _sliced_model(con, builder, session, say=said.append)  # the build warns too
        unguarded = _sliced_model(con, builder, session, frozenset({"_stale"}))
        written = read_table(con, "population", "patient_model", partition_column="reporting_month", partition_value=MONTH)
        ids = [pid for pid, in con.execute("select patient_id from staging.patients where reporting_month = $1",
                                           [MONTH]).fetchall()]
    assert said[1:] == said[:1]
    assert not any(pid in said[0] for pid in ids)
    assert guarded.select(written.columns).equals(written.sort("patient_id"))
    # The control: read by the stale key ranges (no guard), most patients lose their decile.
    deprivation = ["imd2019_decile", "imd2025_decile", "imd_decile", "is_core20"]
    expected = written.sort("patient_id").select("patient_id", *deprivation)
    lost = unguarded.select("patient_id", *deprivation).join(expected, on="patient_id", suffix="_fresh").filter(
        pl.col("imd2019_decile").is_null() & pl.col("imd2019_decile_fresh").is_not_null())
    assert lost.height > written.height // 2, lost.height
    assert not unguarded.select(deprivation).equals(guarded.select(deprivation))
