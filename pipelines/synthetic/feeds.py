"""The optional linked secondary-care feeds: maternity (MSDS), cancer registry, HES tooth extractions, MHSDS contacts."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.synthetic.dates import Calendar
from pipelines.synthetic.events import expand, uniform_days
from pipelines.synthetic.parameters import CYP_MAX_AGE, FEED_RATES
from pipelines.synthetic.population import People, multiplied_rate


def draw_feeds(rng, people: People, cal: Calendar) -> tuple[dict[str, dict], dict]:
    """Draw the four feeds' rows (patient index, date, columns) and the outcomes behind them.

    Each feed also carries rows the pipeline must ignore: older records outside the
    12-month window, records dated after R, exact duplicate rows, and rows for patient ids
    that are not in the GP extract.
    """
    n, r, w0 = people.n, cal.r, cal.w0
    age, hi, dob = people.age, people.last, people.dob
    rows: dict[str, dict] = {}

    # Maternity: women 16-45 with an antenatal booking in the last 12 months.
    cfg = FEED_RATES["maternity_booking_12m"]
    woman = people.sex == "F"
    p_book = np.where(woman & (age >= 18) & (age <= 40), cfg["aged_18_40"],
                      np.where(woman & (age >= 16) & (age <= 45), cfg["aged_16_17_or_41_45"], 0.0))
    booked = rng.random(n) < p_book
    p_coc = np.where(booked, multiplied_rate(FEED_RATES["continuity_of_carer"], people), 0.0)
    s_coc = booked & (rng.random(n) < p_coc)
    b = np.flatnonzero(booked)
    earlier = np.flatnonzero(woman & (age >= 20) & (age <= 45) & (rng.random(n) < 0.3))
    future = np.flatnonzero(woman & (age >= 18) & (age <= 40) & ~booked & (rng.random(n) < 0.01))
    dup = b[rng.random(b.size) < 0.02]
    pid = np.concatenate([b, earlier, future, dup])
    day = np.concatenate([
        uniform_days(rng, np.full(b.size, w0), hi[b]),
        np.maximum(uniform_days(rng, np.full(earlier.size, r - 1500), np.full(earlier.size, w0 - 1)), dob[earlier]),
        r + rng.integers(1, 21, future.size),
        np.zeros(dup.size, dtype=np.int64),
    ])
    flag = np.concatenate([s_coc[b], rng.random(earlier.size) < 0.3, rng.random(future.size) < 0.5, np.zeros(dup.size, bool)])
    first = {int(i): k for k, i in enumerate(b)} if dup.size else {}
    for k, i in enumerate(dup):  # exact copies of the patient's in-window booking row
        day[b.size + earlier.size + future.size + k] = day[first[int(i)]]
        flag[b.size + earlier.size + future.size + k] = flag[first[int(i)]]
    rows["maternity"] = {"pid": pid, "booking_date": day, "is_on_continuity_pathway": flag}

    # Cancer registry: tumours diagnosed in the last 12 months (incidence rising with age),
    # 15% not staged; stage 1-2 less often in Core20 and at 75+; older tumours too.
    cfg = FEED_RATES["cancer_diagnosis_12m"]
    p_cancer = np.where(age >= cfg["min_age"], np.minimum(cfg["at_65"] * np.exp(cfg["per_year_of_age"] * (age - 65)), cfg["cap"]), 0.0)
    diagnosed = rng.random(n) < p_cancer
    st = FEED_RATES["cancer_stage_1_2"]
    staged = diagnosed & (rng.random(n) >= st["unstaged_share"])
    p_early = np.where(staged, np.clip(st["base_rate"] * np.where(people.is_core20, st["core20_multiplier"], 1.0)
                                       * np.where(age >= 75, st["aged_75_plus_multiplier"], 1.0), 0, 1), 0.0)
    early = staged & (rng.random(n) < p_early)
    stage = np.where(early, rng.integers(1, 3, n), rng.integers(3, 5, n))
    d = np.flatnonzero(diagnosed)
    older = np.flatnonzero((age >= 40) & (rng.random(n) < p_cancer * 2))
    pid = np.concatenate([d, older])
    day = np.concatenate([
        uniform_days(rng, np.full(d.size, w0), hi[d]),
        uniform_days(rng, np.full(older.size, r - 2000), np.full(older.size, w0 - 1)),
    ])
    stage_col = np.concatenate([np.where(staged[d], stage[d], 0), rng.integers(0, 5, older.size)])
    rows["cancer_registry"] = {"pid": pid, "diagnosis_date": day, "stage": stage_col}  # 0 = not staged

    # Hospital tooth extractions for decay, children 10 and under (strong deprivation
    # gradient); some extraction episodes not for decay; older episodes outside the window.
    child = age <= 10
    p_tooth = np.where(child, multiplied_rate(FEED_RATES["caries_extraction_12m_aged_0_10"], people), 0.0)
    s_tooth = child & (rng.random(n) < p_tooth)
    t = np.flatnonzero(s_tooth)
    other = np.flatnonzero(child & ~s_tooth & (rng.random(n) < 0.002))
    old_t = np.flatnonzero(child & (age >= 2) & ~s_tooth & (rng.random(n) < 0.004))
    owner, _ = expand(rng.integers(1, 3, t.size))
    pid = np.concatenate([t[owner], other, old_t])
    day = np.concatenate([
        uniform_days(rng, np.full(owner.size, w0), hi[t[owner]]),
        uniform_days(rng, np.full(other.size, w0), hi[other]),
        np.maximum(uniform_days(rng, np.full(old_t.size, w0 - 700), np.full(old_t.size, w0 - 1)), dob[old_t]),
    ])
    flag = np.concatenate([np.ones(owner.size, bool), np.zeros(other.size, bool), np.ones(old_t.size, bool)])
    rows["dental_extractions"] = {"pid": pid, "episode_date": day, "is_caries_extraction": flag}

    # CYP mental health contacts, 0-17: 1-8 attended contacts in the window when drawn
    # (lower for under-5s and for some ethnic groups); older contacts for some others.
    cfg = FEED_RATES["cyp_mh_contact_12m"]
    young = age <= CYP_MAX_AGE
    p_mh = np.where(young, np.clip(multiplied_rate(cfg, people) * np.where(age < 5, cfg["under_5_multiplier"], 1.0), 0, 1), 0.0)
    s_mh = young & (rng.random(n) < p_mh)
    m = np.flatnonzero(s_mh)
    owner, _ = expand(rng.integers(1, 9, m.size))
    old_m = np.flatnonzero(young & (age >= 2) & ~s_mh & (rng.random(n) < 0.05))
    pid = np.concatenate([m[owner], old_m])
    day = np.concatenate([
        uniform_days(rng, np.full(owner.size, w0), hi[m[owner]]),
        np.maximum(uniform_days(rng, np.full(old_m.size, w0 - 700), np.full(old_m.size, w0 - 1)), dob[old_m]),
    ])
    rows["mh_contacts"] = {"pid": pid, "contact_date": day}
    outcomes = {
        "booked": booked, "p_coc": p_coc, "s_coc": s_coc,
        "staged": staged, "p_early": p_early, "early": early,
        "p_tooth": p_tooth, "s_tooth": s_tooth, "p_mh": p_mh, "s_mh": s_mh,
    }
    return rows, outcomes


def feed_frames(rows: dict[str, dict], ids: pl.Series, rng: np.random.Generator) -> dict[str, pl.DataFrame]:
    """Return each feed as a frame in its contract's column order, with a few stray ids."""
    from pipelines.segmentation.schemas import FEEDS

    frames = {}
    for name, columns in rows.items():
        feed = FEEDS[name]
        data = {"patient_id": ids.gather(columns["pid"])}
        for column, values in columns.items():
            if column == "pid":
                continue
            if column == feed.date_column:
                data[column] = pl.Series(values.astype(np.int32)).cast(pl.Date)
            elif column == "stage":
                data[column] = pl.Series(values).cast(pl.Int8).replace(0, None)
            else:
                data[column] = pl.Series(values)
        frame = pl.DataFrame(data)
        # Rows for patients the GP extract does not hold (ids outside the generator's
        # 2^40 range): the pipeline must drop them.
        stray = frame.head(3).with_columns(
            pl.Series("patient_id", [f"99999{i:08d}" for i in range(min(3, frame.height))], dtype=pl.String)
        )
        frame = pl.concat([frame, stray])
        for column in feed.table.names:
            if column not in frame.columns:
                frame = frame.with_columns(pl.lit(None, dtype=feed.table.column(column).dtype).alias(column))
        frames[name] = frame.select(feed.table.names).cast(feed.table.schema).sort("patient_id", feed.date_column, maintain_order=True)
    return frames


