"""Write one synthetic monthly extract: patients, events, the optional feeds, the ground truth and a manifest."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.segmentation.schemas import INPUT_EVENTS, INPUT_PATIENTS
from pipelines.synthetic.clinical import (
    emit_diagnoses,
    emit_ethnicity,
    emit_indicator_events,
    emit_library_events,
    emit_lithium,
    emit_other_areas,
)
from pipelines.synthetic.dates import Calendar
from pipelines.synthetic.defects import draw_defect_kinds, draw_postcodes
from pipelines.synthetic.events import EventBuffer
from pipelines.synthetic.feeds import draw_feeds, feed_frames
from pipelines.synthetic.ground_truth import build_ground_truth, derived_outcomes
from pipelines.synthetic.parameters import GENERATOR
from pipelines.synthetic.population import People, draw_conditions, draw_people
from pipelines.synthetic.practices import Practices, load_practices, plan_practices
from pipelines.synthetic.reference import Reference, load_reference


def generate_extract(
    out_dir: Path,
    *,
    reporting_month: date,
    n_patients: int = 20_000,
    seed: int = 20260,
    icb_code: str = "QT1",
    defect_rate: float = 0.02,
    reference_dir: str | Path | None = None,
    include_feeds: bool = True,
) -> dict:
    """Write a synthetic monthly extract (patients, events, optional feeds) with its ground truth.

    Arguments:
        out_dir: folder to write `patients.parquet`, `events.parquet`, `ground_truth.json`
            and `extract.json` into (created if missing; files are replaced).
        reporting_month: first day of the reporting month; the reference date R is its last day.
        n_patients: patients to generate (one row each; patient rows are never duplicated),
            registered at a subset of the ICB's practices at their real relative list sizes
            (all of them when n_patients is at least the ICB's registered population).
        seed: seed of the single numpy PCG64 generator; same arguments give identical bytes.
        icb_code: ODS code of the ICB whose LSOAs, postcodes and practices are used.
        defect_rate: share of patients given a data-quality defect, split evenly over blank,
            invalid and non-English postcodes, missing ethnicity and duplicated event rows.
        reference_dir: shared reference data folder (see reference_data.loader).
        include_feeds: also write the optional linked feeds (maternity, cancer_registry,
            dental_extractions, mh_contacts); without them their indicators are not available.

    Returns:
        The ground truth (also written as `ground_truth.json`): register counts and
        expected prevalences; for every available indicator, per Core20/rest group and
        overall, the denominator, the realised numerator and (where the outcome is drawn
        directly) the expected rate and the standard deviation of the numerator; the
        multipliers used and the count of every injected defect. Drawn indicators also
        carry `breakdowns`: for the gap table's `core20` (IMD 2019) and `ethnicity_broad`
        breakdowns, the reference group, per observable group the same figures, and per
        compared group the expected gap against the reference (a difference of
        proportions, as the gap table's `gap`) with its standard deviation. `practices`
        records which practices register the patients, at what scale of their January
        2021 list sizes, and which active practices were left out (see practices.py).
    """
    if reporting_month.day != 1:
        raise ValueError("reporting_month must be the first day of a month")
    if n_patients < 1:
        raise ValueError("n_patients must be at least 1")
    if not 0.0 <= defect_rate <= 0.5:
        raise ValueError("defect_rate must be between 0 and 0.5")

    cal = Calendar.of(reporting_month)
    ref = load_reference(icb_code, reference_dir)
    practices = load_practices(ref, icb_code, reference_dir)
    rng = np.random.Generator(np.random.PCG64(seed))

    plan = plan_practices(rng, practices, n_patients)
    people = draw_people(rng, ref, plan, cal)
    conditions = draw_conditions(rng, people, cal)
    defect_kind = draw_defect_kinds(rng, n_patients, defect_rate)
    events = EventBuffer()
    latest_dx = emit_diagnoses(rng, ref, people, conditions, events)
    emit_lithium(rng, ref, people, conditions, cal, events)
    eth = emit_ethnicity(rng, ref, people, defect_kind, events)
    outcomes = emit_indicator_events(rng, ref, people, conditions, cal, events)
    outcomes.update(emit_other_areas(rng, ref, people, conditions, cal, events))
    outcomes.update(emit_library_events(rng, ref, people, conditions, latest_dx, cal, events))
    feed_rows, feed_outcomes = draw_feeds(rng, people, cal)
    outcomes.update(feed_outcomes)
    postcodes, postcode_defects = draw_postcodes(rng, ref, people, defect_kind)

    event_rows, n_duplicates = events.finish(rng, defect_rate)
    outcomes.update(derived_outcomes(ref, event_rows, people, cal, reference_dir))
    patient_ids = pseudonymous_ids(rng, n_patients)
    patients = _patients_frame(ref, practices, people, patient_ids, postcodes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The events are the bulk of the extract: written as soon as they exist (under a
    # temporary name, renamed with the rest at the end) and let go.
    events_frame = _events_frame(ref, patient_ids, event_rows)
    del event_rows
    pending_events = out / ".events.parquet.partial"
    events_frame.write_parquet(pending_events, compression="zstd", statistics=True)
    n_events = events_frame.height
    del events_frame
    feeds = feed_frames(feed_rows, patient_ids, rng)

    truth = build_ground_truth(
        people, conditions, outcomes, defect_kind, postcode_defects, eth, cal,
        seed=seed, n_patients=n_patients, icb_code=icb_code, defect_rate=defect_rate,
        n_duplicates=n_duplicates, include_feeds=include_feeds, practices=plan.summary(),
    )
    patients.write_parquet(out / "patients.parquet", compression="zstd", statistics=True)
    pending_events.replace(out / "events.parquet")
    for name, frame in feeds.items():
        target = out / f"{name}.parquet"
        if include_feeds:
            frame.write_parquet(target, compression="zstd", statistics=True)
        else:
            target.unlink(missing_ok=True)
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest = {
        "generator": GENERATOR,
        "seed": seed,
        "n_patients": n_patients,
        "reporting_month": reporting_month.isoformat(),
        "reference_date": cal.reference_date.isoformat(),
        "icb_code": icb_code,
        "defect_rate": defect_rate,
        "n_practices": int(plan.chosen.size),
        "row_counts": {"patients": patients.height, "events": n_events,
                       **({name: frame.height for name, frame in feeds.items()} if include_feeds else {})},
    }
    (out / "extract.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return truth


def pseudonymous_ids(rng: np.random.Generator, n: int) -> pl.Series:
    """Return n distinct 13-digit pseudonymous ids: a seeded bijection of 0..n-1 on [0, 2^40).

    Odd multipliers, additions and xor-shifts are each invertible modulo 2^40, so distinct
    inputs give distinct ids without any uniqueness check.
    """
    mask = np.uint64(2**40 - 1)
    a, c = (np.uint64(int(rng.integers(0, 2**39)) * 2 + 1) for _ in range(2))
    b = np.uint64(int(rng.integers(0, 2**40)))
    x = (np.arange(n, dtype=np.uint64) * a + b) & mask
    x ^= x >> np.uint64(19)
    x = (x * c) & mask
    x ^= x >> np.uint64(17)
    ids = x
    return pl.Series("patient_id", ids).cast(pl.String).str.zfill(13)


def _dates(days: np.ndarray, missing: np.ndarray | None = None) -> pl.Series:
    """Return a Date series of day numbers, null where `missing`."""
    s = pl.Series(days.astype(np.int32)).cast(pl.Date)
    if missing is not None:
        s = pl.select(pl.when(pl.Series(missing)).then(None).otherwise(s)).to_series()
    return s


def _patients_frame(ref: Reference, practices: Practices, people: People, ids: pl.Series, postcodes: pl.Series) -> pl.DataFrame:
    """Return the patients table in the input contract's column order and types."""
    frame = pl.DataFrame({
        "patient_id": ids,
        "practice_code": practices.codes.gather(people.practice),
        "postcode": postcodes,
        "lsoa_code": pl.Series([None] * people.n, dtype=pl.String),
        "date_of_birth": _dates(people.dob),
        "year_of_birth": pl.Series([None] * people.n, dtype=pl.Int32),
        "month_of_birth": pl.Series([None] * people.n, dtype=pl.Int32),
        "sex": pl.Series(people.sex, dtype=pl.String),
        "registration_start_date": _dates(people.start),
        "registration_end_date": _dates(np.maximum(people.end, 0), people.end < 0),
    })
    return frame.select(INPUT_PATIENTS.names).cast(INPUT_PATIENTS.schema)


def _events_frame(ref: Reference, ids: pl.Series, rows: pl.DataFrame) -> pl.DataFrame:
    """Return the events table in the input contract's column order and types."""
    frame = pl.DataFrame({
        "patient_id": ids.gather(rows["pid"]),
        "code": ref.codes.gather(rows["code"]),
        "event_date": rows["day"].cast(pl.Int32).cast(pl.Date),
        "value": rows["value"],
    })
    return frame.select(INPUT_EVENTS.names).cast(INPUT_EVENTS.schema)


