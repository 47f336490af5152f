"""`bp_reading`: a valid blood-pressure pair (CVDPREVENT's rule), optionally at or below age-banded limits.

A reading is a **same-day pair**: a systolic and a diastolic value recorded on one date
(the extract carries each as its own coded row, `schemas.INPUT_EVENTS`). On a day with
several, the day's reading is the **lowest** systolic and the **lowest** diastolic of that
day; a systolic below `systolic_min` (50) or a diastolic below `diastolic_min` (20) is
invalid and ignored; a day without both a valid systolic and a valid diastolic is no
reading. The **latest** day with a valid pair in the window decides (NHSDigital
cvd-prevent-tool, `documentation/cvdp_hypertension.md`; DOMAIN.md section 4).

Readings come in `kinds`, each its own systolic and diastolic codelists and an
`adjustment` added to every limit: the shipped definitions use clinic readings (limits as
written) and home / daytime-ambulatory averages (5 mmHg lower, NICE NG136). A pair is made
within one kind (a clinic systolic never pairs with a home diastolic). When the deciding
day holds pairs of more than one kind, the day passes when any of its pairs is within that
kind's limits - the same "lowest of the day" reading of the day that CVDPREVENT applies
within one kind.

Without `thresholds` the criterion asks only "is there a valid pair in the window" (BP
recorded, case-finding); with them, whether the latest valid pair is at or below the limits
of the patient's age band at R. No valid pair in the window is "no".
"""

from __future__ import annotations

import hashlib
from typing import Annotated

import polars as pl
from pydantic import Field

from pipelines.segmentation.criteria.base import (
    CodelistIds,
    Criterion,
    EvidenceContext,
    Identifier,
    ModelContext,
    Strict,
    Window,
    codes_text,
)
from pipelines.segmentation.criteria.latest_value_at_most import Threshold


class ReadingKind(Strict):
    """One kind of reading: its systolic and diastolic codelists and the shift of every limit (mmHg)."""

    name: Identifier
    systolic: CodelistIds
    diastolic: CodelistIds
    adjustment: float = 0.0

    def describe(self) -> str:
        shift = f", limits {self.adjustment:+g} mmHg" if self.adjustment else ""
        return f"{self.name} ({codes_text(self.systolic)} with {codes_text(self.diastolic)}{shift})"


class BpReadingSpec(Window):
    """Reading kinds, the window, the validity floor and (optionally) the limits by age at R."""

    kinds: Annotated[list[ReadingKind], Field(min_length=1)]
    systolic_min: Annotated[float, Field(ge=0)] = 50.0
    diastolic_min: Annotated[float, Field(ge=0)] = 20.0
    thresholds: Annotated[list[Threshold], Field(min_length=1)] | None = None


class BpReading(Criterion):
    """The latest valid same-day BP pair in the window (at or below the limits when they are given).

    Examples:
        >>> rule = BpReading.model_validate({"bp_reading": {"within_months": 12,
        ...     "kinds": [{"name": "clinic", "systolic": ["sys"], "diastolic": ["dia"]}],
        ...     "thresholds": [{"age_below": 80, "systolic": 140, "diastolic": 90}]}})
        >>> rule.describe()
        'latest valid BP pair (same day, lowest systolic and lowest diastolic of the day; systolic >= 50, diastolic >= 20) of clinic (sys with dia) within 12 months at or below 140/90 under 80'
    """

    key = "bp_reading"
    bp_reading: BpReadingSpec

    def codelists(self):
        for i, kind in enumerate(self.bp_reading.kinds):
            for field in ("systolic", "diastolic"):
                for j, codelist_id in enumerate(getattr(kind, field)):
                    yield f"kinds[{i}].{field}[{j}]", codelist_id

    def describe(self) -> str:
        spec = self.bp_reading
        pair = (f"valid BP pair (same day, lowest systolic and lowest diastolic of the day; systolic >= "
                f"{spec.systolic_min:g}, diastolic >= {spec.diastolic_min:g}) of "
                + " or ".join(k.describe() for k in spec.kinds) + f" {spec.describe()}")
        if spec.thresholds is None:
            return "a " + pair
        bands = ", ".join(f"{t.systolic:g}/{t.diastolic:g} {t.ages()}" for t in spec.thresholds)
        return f"latest {pair} at or below {bands}"

    def compile(self, model: ModelContext) -> str:
        spec = self.bp_reading
        masks = [(model.mask(k.systolic, spec, needs_value=True), model.mask(k.diastolic, spec, needs_value=True))
                 for k in spec.kinds]
        lows = []
        for i, (sys_mask, dia_mask) in enumerate(masks):
            lows.append(f"min(value) filter (where {sys_mask} and value >= {spec.systolic_min!r}) as s{i}")
            lows.append(f"min(value) filter (where {dia_mask} and value >= {spec.diastolic_min!r}) as d{i}")
        any_row = " or ".join(f"({m})" for pair in masks for m in pair)
        valid = " or ".join(f"(s{i} is not null and d{i} is not null)" for i in range(len(masks)))
        columns = ["day"] + [f"{side}{i}" for i in range(len(masks)) for side in ("s", "d")]
        # One row per patient: the latest day holding a valid pair of some kind, with that
        # day's lowest valid systolic and diastolic of every kind.
        select = (
            f"select patient, event_date as day, {', '.join(columns[1:])} from ("
            f"select patient, event_date, {', '.join(lows)} from {{events}} where {any_row} "
            f"group by patient, event_date) where {valid} "
            f"qualify row_number() over (partition by patient order by event_date desc) = 1"
        )
        # Named by what it computes (kinds, window length, floors), never by the month's dates.
        what = spec.model_dump_json(exclude={"thresholds"})
        key = "bp_pair_" + hashlib.sha256(what.encode()).hexdigest()[:12]
        cols = model.derived(key, columns, select)
        if spec.thresholds is None:
            return f"({cols['day']} is not null)"
        age = model.attribute("age")
        bands = []
        for t in spec.thresholds:
            ages = ([f"{age} >= {t.age_from}"] if t.age_from is not None else []) + (
                [f"{age} < {t.age_below}"] if t.age_below is not None else [])
            within = " or ".join(
                f"({cols[f's{i}']} <= {t.systolic + k.adjustment:g} and {cols[f'd{i}']} <= {t.diastolic + k.adjustment:g})"
                for i, k in enumerate(spec.kinds))
            bands.append(f"coalesce({' and '.join(ages + [f'({within})'])}, false)")
        return "(" + " or ".join(bands) + ")"

    def evidence(self, patient: EvidenceContext) -> str:
        spec = self.bp_reading
        start = patient.window_start(spec)
        days: dict = {}
        for k in spec.kinds:
            for side, ids, floor in (("systolic", k.systolic, spec.systolic_min), ("diastolic", k.diastolic, spec.diastolic_min)):
                rows = patient.rows(ids, start, needs_value=True).filter(pl.col("value") >= floor)
                for day, low in rows.group_by("event_date").agg(pl.col("value").min()).iter_rows():
                    days.setdefault(day, {}).setdefault(k.name, {})[side] = low
        valid = {d: {n: v for n, v in kinds.items() if len(v) == 2} for d, kinds in days.items()}
        valid = {d: kinds for d, kinds in valid.items() if kinds}
        if not valid:
            return "no valid same-day BP pair in the window"
        day = max(valid)
        readings = "; ".join(f"{name} {v['systolic']:g}/{v['diastolic']:g}" for name, v in sorted(valid[day].items()))
        return f"latest valid pair on {day}: {readings}; age {patient.person.get('age')}"
