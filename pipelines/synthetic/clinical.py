"""Clinical events: register diagnoses, ethnicity codes and the events behind every GP-record indicator.

Each emitter writes events whose order and values make a drawn state true under the
shipped definitions' rules (QOF latest-diagnosis-after-latest-resolution registers, the
CVDPREVENT valid-BP-pair rule, latest valid ethnicity code), and returns the drawn
outcomes and probabilities the ground truth needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.synthetic.dates import Calendar, day_number
from pipelines.synthetic.events import EventBuffer, expand, uniform_days
from pipelines.synthetic.parameters import (
    CONDITIONS,
    CYP_MAX_AGE,
    HOME_BP_ADJUSTMENT,
    HYPERTENSION_TO_TARGET,
    LIBRARY_RATES,
    MAIN_DIASTOLIC,
    MAIN_HOME_SYSTOLIC,
    MAIN_SYSTOLIC,
    MAXIMUM_SYSTOLIC,
    ETH_NOT_RECORDED,
    OTHER_AREAS,
    LITHIUM_ONLY_RATE,
    SMI_COMPONENTS,
    SMI_HEALTH_CHECK,
    YEAR,
)
from pipelines.synthetic.population import ConditionState, People, drawn_rate, multiplied_rate
from pipelines.synthetic.reference import Reference, pick_codes


def emit_diagnoses(rng, ref, people: People, conditions: dict[str, ConditionState], events: EventBuffer) -> dict[str, np.ndarray]:
    """Emit diagnosis and resolved codes whose order makes each register state true.

    Returns each condition's latest diagnosis day for patients on its register (-1 for the
    rest), so that later codes (e.g. the diabetes type) can sit on that day without moving it.
    """
    latest: dict[str, np.ndarray] = {}
    for c in CONDITIONS:
        st = conditions[c.name]
        who = np.flatnonzero(st.ever)
        latest[c.name] = np.full(people.n, -1, dtype=np.int64)
        if who.size == 0:
            continue
        dob, hi = people.dob[who], people.last[who]
        lo = np.maximum(dob + int(c.onset_age * YEAR), hi - int(30 * YEAR))
        lo = np.maximum(np.minimum(lo, hi - 3), dob)
        # Three strictly increasing days a < b < c in [lo, hi - 1]: diagnosis, resolution,
        # re-diagnosis. Strict order means no same-day tie decides a register state.
        f = np.sort(rng.random((who.size, 3)), axis=1)
        width = np.maximum(hi - lo - 2, 1)
        a = lo + np.floor(f[:, 0] * width).astype(np.int64)
        b = lo + np.floor(f[:, 1] * width).astype(np.int64) + 1
        cc = lo + np.floor(f[:, 2] * width).astype(np.int64) + 2
        resolved, rediag = st.resolved[who], st.rediagnosed[who]
        active = ~resolved & ~rediag
        second = active & (rng.random(who.size) < 0.4)  # a later code from the same cluster
        events.add(who, pick_codes(rng, ref, c.diagnosis, who.size), a)
        events.add(who[second], pick_codes(rng, ref, c.diagnosis, int(second.sum())), cc[second])
        if c.resolved is not None:
            r_day = np.where(resolved, cc, b)
            has_res = resolved | rediag
            events.add(who[has_res], pick_codes(rng, ref, c.resolved, int(has_res.sum())), r_day[has_res])
            events.add(who[rediag], pick_codes(rng, ref, c.diagnosis, int(rediag.sum())), cc[rediag])
        latest[c.name][who] = np.where(resolved, -1, np.where(second | rediag, cc, a))
    return latest


@dataclass
class EthnicityCounts:
    state: np.ndarray  # 0 coded, 1 not stated / not known, 2 no code (baseline), 3 no code (defect)
    superseded: np.ndarray
    recorded_group6: np.ndarray  # grouping_6 index (0-4) of the latest valid code when coded, else -1
    not_known: np.ndarray  # state 1 whose code is "Ethnic group not recorded" (category 99, not Z)
    later_unstated: np.ndarray  # coded, with a not-stated / not-known code AFTER the valid one (ignored)


def emit_ethnicity(rng, ref: Reference, people: People, defect_kind: np.ndarray, events: EventBuffer) -> EthnicityCounts:
    """Emit ethnicity codes: ~8% none, ~3% explicitly not stated, some superseded codes."""
    n = people.n
    u = rng.random(n)
    # Roughly the recording levels seen in GP data: about 8% never coded, 3% not stated.
    state = np.where(u < 0.08, 2, np.where(u < 0.11, 1, 0))
    # Defect: a recorded ethnicity dropped from the extract. Counted only where it removed a code.
    state = np.where((defect_kind == 4) & (state == 0), 3, state)

    lo = np.maximum(people.dob, people.start - int(5 * YEAR))
    day = uniform_days(rng, lo, people.last)
    coded = np.flatnonzero(state == 0)
    g16 = people.eth16[coded]
    code = ref.eth16_offset[g16 - 1] + np.floor(rng.random(coded.size) * ref.eth16_count[g16 - 1]).astype(np.int64)
    # A few patients re-stated their ethnicity: an older code of another group, dated
    # strictly earlier, is superseded by the latest one (the latest code wins).
    sup = (rng.random(coded.size) < 0.025) & (people.last[coded] > lo[coded] + 1)
    latest = np.where(sup, uniform_days(rng, lo[coded] + 1, people.last[coded]), day[coded])
    events.add(coded, code, latest)
    if sup.any():
        older_g = (g16[sup] - 1 + rng.integers(1, 16, int(sup.sum()))) % 16 + 1
        older_code = ref.eth16_offset[older_g - 1] + np.floor(rng.random(older_g.size) * ref.eth16_count[older_g - 1]).astype(np.int64)
        older_day = uniform_days(rng, lo[coded][sup], latest[sup] - 1)
        events.add(coded[sup], older_code, older_day)
    ns = np.flatnonzero(state == 1)
    ns_code = pick_codes(rng, ref, "eth_not_stated", ns.size)
    events.add(ns, ns_code, day[ns])
    not_known = np.zeros(n, dtype=bool)
    not_known[ns] = (ref.codes.gather(ns_code) == ETH_NOT_RECORDED).to_numpy()
    # Some coded patients later get a not-stated / not-known code: the latest VALID code
    # still decides (DOMAIN.md section 3), so their ethnicity is unchanged.
    later = (rng.random(coded.size) < 0.04) & (latest < people.last[coded])
    events.add(coded[later], pick_codes(rng, ref, "eth_not_stated", int(later.sum())),
               uniform_days(rng, latest[later] + 1, people.last[coded][later]))
    later_unstated = np.zeros(n, dtype=bool)
    later_unstated[coded[later]] = True
    superseded = np.zeros(n, dtype=bool)
    superseded[coded[sup]] = True
    # What the pipeline will read: the codelist's broad group of the latest (winning) code.
    recorded = np.full(n, -1, dtype=np.int64)
    recorded[coded] = ref.eth16_group6[g16 - 1]
    return EthnicityCounts(state=state, superseded=superseded, recorded_group6=recorded, not_known=not_known,
                           later_unstated=later_unstated)


def _controlled(rng, thr: np.ndarray, dia_thr: np.ndarray | int = 90) -> tuple[np.ndarray, np.ndarray]:
    """Return (systolic, diastolic) at or below the thresholds; some exactly at them."""
    m = thr.size
    dia_thr = np.broadcast_to(dia_thr, (m,))
    sys = np.where(rng.random(m) < 0.12, thr, thr - 1 - rng.integers(0, 30, m))
    dia = np.where(rng.random(m) < 0.12, dia_thr, dia_thr - 28 + rng.integers(0, 28, m))
    return sys, dia


def _uncontrolled(rng, thr: np.ndarray, dia_thr: np.ndarray | int = 90) -> tuple[np.ndarray, np.ndarray]:
    """Return (systolic, diastolic) with systolic, diastolic or both above the thresholds."""
    m = thr.size
    sys_ok, dia_ok = _controlled(rng, thr, dia_thr)
    sys_high = thr + 1 + np.minimum(np.floor(rng.exponential(12.0, m)), 60).astype(np.int64)
    dia_high = np.broadcast_to(dia_thr, (m,)) + 1 + np.minimum(np.floor(rng.exponential(6.0, m)), 30).astype(np.int64)
    kind = rng.random(m)  # 60% systolic high, 25% diastolic high, 15% both
    sys = np.where(kind < 0.60, sys_high, np.where(kind < 0.85, sys_ok, sys_high))
    dia = np.where(kind < 0.60, dia_ok, dia_high)
    return sys, dia


def _emit_bp(rng, ref: Reference, events: EventBuffer, pid, day, sys, dia, home: bool = False) -> None:
    """Emit one blood pressure reading: a systolic and a diastolic observable of one kind on the same day.

    Clinic readings by default; `home` writes a home-average pair (judged 5 mmHg lower).
    """
    if home:
        events.add(pid, pick_codes(rng, ref, "bp_systolic_out_of_office", pid.size, MAIN_HOME_SYSTOLIC), day, sys)
        events.add(pid, pick_codes(rng, ref, "homebp_diastolic_average", pid.size), day, dia)
        return
    events.add(pid, pick_codes(rng, ref, "bp_systolic_clinic", pid.size, MAIN_SYSTOLIC), day, sys)
    events.add(pid, pick_codes(rng, ref, "bp_diastolic_clinic", pid.size, MAIN_DIASTOLIC), day, dia)


def _code_index(ref: Reference, codelist: str, code: str) -> int:
    """Return the index into ref.codes of one code of a codelist's slice."""
    offset, n = ref.slices[codelist]
    return offset + int(np.flatnonzero((ref.codes.slice(offset, n) == code).to_numpy())[0])


def _emit_no_reading(rng, ref: Reference, events: EventBuffer, pid, day, controlled: np.ndarray) -> None:
    """Emit rows on `day` that are NOT a valid reading, with values that would pass (or fail)
    if they were read: an invalid systolic (< 50) or diastolic (< 20), a lone systolic, or a
    maximum systolic beside a diastolic. The pipeline must ignore them all."""
    m = pid.size
    kind = rng.integers(0, 4, m)
    sys = np.where(controlled, rng.integers(100, 130, m), rng.integers(165, 190, m))
    dia = np.where(controlled, rng.integers(60, 80, m), rng.integers(95, 110, m))
    sys = np.where(kind == 0, rng.integers(20, 50, m), sys)  # invalid systolic, below 50
    dia = np.where(kind == 1, rng.integers(5, 20, m), dia)  # invalid diastolic, below 20
    clinic_sys = pick_codes(rng, ref, "bp_systolic_clinic", m, MAIN_SYSTOLIC)
    sys_code = np.where(kind == 3, _code_index(ref, "systolic_blood_pressure_qof", MAXIMUM_SYSTOLIC), clinic_sys)
    events.add(pid, sys_code, day, sys)
    with_dia = kind != 2  # kind 2: a lone systolic, no diastolic that day
    events.add(pid[with_dia], pick_codes(rng, ref, "bp_diastolic_clinic", int(with_dia.sum()), MAIN_DIASTOLIC),
               day[with_dia], dia[with_dia])


def _normal_bp(rng, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return everyday (systolic, diastolic) readings, systolic rising with age (approximate)."""
    sys = np.clip(np.rint(rng.normal(118 + 0.45 * np.maximum(age - 18, 0), 13)), 90, 200)
    dia = np.clip(np.rint(rng.normal(76, 8, age.size)), 50, 120)
    return sys, dia


def emit_indicator_events(rng, ref: Reference, people: People, conditions, cal: Calendar, events: EventBuffer) -> dict:
    """Emit SMI health-check and hypertension BP events whose outcome is drawn with p_i.

    The SMI health check and hypertension control share blood pressure readings, so the
    hypertension draw is made first and the SMI draw respects it: an SMI patient who
    passes the check always has a reading in the window, and one who fails has a missing
    component chosen among those the hypertension readings leave free. Neither rate is
    distorted by the other.
    """
    n = people.n
    smi_on, htn_on = conditions["smi"].on, conditions["hypertension"].on
    p_smi, p_htn = drawn_rate(SMI_HEALTH_CHECK, people), drawn_rate(HYPERTENSION_TO_TARGET, people)
    s_smi = smi_on & (rng.random(n) < p_smi)
    s_htn = htn_on & (rng.random(n) < p_htn)
    # Failures: about a third have no reading in the window at all, the rest an
    # uncontrolled latest reading; never "no reading" for an SMI patient passing the check.
    no_reading = htn_on & ~s_htn & (rng.random(n) < 0.35) & ~(smi_on & s_smi)
    w0 = cal.w0

    # Hypertension: history older than the window, then (unless no_reading) a latest day D
    # in the window whose lowest values decide, with earlier in-window readings of the
    # opposite kind so that only the latest one gives the right answer.
    who = np.flatnonzero(htn_on)
    thr = np.where(people.age[who] >= 80, 150, 140)
    hi = people.last[who]
    owner, _ = expand(rng.integers(2, 11, who.size))
    day = np.minimum(uniform_days(rng, np.full(owner.size, w0 - int(6 * YEAR)), np.full(owner.size, w0 - 1)), hi[owner])
    mix = rng.random(owner.size) < 0.5
    cs, cd = _controlled(rng, thr[owner])
    us, ud = _uncontrolled(rng, thr[owner])
    _emit_bp(rng, ref, events, who[owner], np.maximum(day, people.dob[who][owner]), np.where(mix, cs, us), np.where(mix, cd, ud))

    has = ~no_reading[who]
    ok = s_htn[who]
    d_last = uniform_days(rng, np.minimum(w0 + 60, hi), hi)
    # The deciding reading: a clinic pair, or for some a home-average pair judged 5 mmHg lower.
    home = has & (rng.random(who.size) < 0.15)
    sys_thr = np.where(home, thr - HOME_BP_ADJUSTMENT, thr)
    dia_thr = np.where(home, 90 - HOME_BP_ADJUSTMENT, 90)
    cs, cd = _controlled(rng, sys_thr, dia_thr)
    us, ud = _uncontrolled(rng, sys_thr, dia_thr)
    sys_l, dia_l = np.where(ok, cs, us), np.where(ok, cd, ud)
    for is_home in (False, True):
        sel = has & (home == is_home)
        _emit_bp(rng, ref, events, who[sel], d_last[sel], sys_l[sel], dia_l[sel], home=is_home)
    # A repeat reading on the same day with higher values: the lowest value must win.
    rep = has & ~home & (rng.random(who.size) < np.where(ok, 0.30, 0.20))
    _emit_bp(rng, ref, events, who[rep], d_last[rep], sys_l[rep] + rng.integers(5, 31, int(rep.sum())), dia_l[rep] + rng.integers(0, 11, int(rep.sum())))
    n_earlier = np.where(has & (d_last - 1 >= w0), rng.choice(3, who.size, p=[0.4, 0.4, 0.2]), 0)
    owner, _ = expand(n_earlier)
    day = uniform_days(rng, np.full(owner.size, w0), d_last[owner] - 1)
    flip = rng.random(owner.size) < 0.6  # earlier readings mostly the opposite of the latest
    earlier_ok = np.where(flip, ~ok[owner], ok[owner])
    cs, cd = _controlled(rng, thr[owner])
    us, ud = _uncontrolled(rng, thr[owner])
    _emit_bp(rng, ref, events, who[owner], day, np.where(earlier_ok, cs, us), np.where(earlier_ok, cd, ud))
    # Later rows that are no valid reading (invalid values, a lone systolic, a maximum), whose
    # values say the opposite of the drawn outcome: only the valid-pair rule gives the truth.
    # Patients with no reading in the window get some too (they stay without a valid reading).
    later = np.where(has, d_last < hi, True) & (rng.random(who.size) < 0.30)
    start = np.where(has, d_last + 1, np.minimum(w0, hi))
    sel = np.flatnonzero(later)
    _emit_no_reading(rng, ref, events, who[sel], uniform_days(rng, start[sel], hi[sel]), ~ok[sel])

    # SMI health check: six components (BP, lipids, HbA1c, smoking status, BMI or weight, alcohol).
    who = np.flatnonzero(smi_on)
    m = who.size
    hi = people.last[who]
    bp_by_htn = htn_on[who]  # these patients' BP comes from the hypertension readings
    fail = ~s_smi[who]
    miss = (rng.random((m, SMI_COMPONENTS)) < 0.45) & fail[:, None]
    miss[:, 0] = np.where(bp_by_htn, no_reading[who], miss[:, 0])
    none_missing = fail & ~miss.any(axis=1)
    col = np.where(bp_by_htn, rng.integers(1, SMI_COMPONENTS, m), rng.integers(0, SMI_COMPONENTS, m))
    miss[np.flatnonzero(none_missing), col[none_missing]] = True
    smoker = rng.random(m) < 0.40  # smoking is far commoner with SMI (approximate)
    old_lo, old_hi = w0 - 3 * 365, w0 - 1
    for j in range(SMI_COMPONENTS):  # each component vectorised over the SMI cohort
        emit = ~bp_by_htn if j == 0 else np.ones(m, dtype=bool)
        n_in = np.where(emit & ~miss[:, j], 1 + (rng.random(m) < 0.25), 0)
        n_old = np.where(emit & (rng.random(m) < 0.7), rng.integers(1, 3, m), 0)
        n_old = np.where(emit & miss[:, j] & (n_old == 0) & (rng.random(m) < 0.5), 1, n_old)
        o_in, _ = expand(n_in)
        o_old, _ = expand(n_old)
        owner = np.concatenate([o_in, o_old])
        day = np.concatenate([
            uniform_days(rng, np.minimum(w0, hi[o_in]), hi[o_in]),
            np.minimum(uniform_days(rng, np.full(o_old.size, old_lo), np.full(o_old.size, old_hi)), hi[o_old]),
        ])
        day = np.maximum(day, people.dob[who][owner])
        pid = who[owner]
        if j == 0:
            sys, dia = _normal_bp(rng, people.age[pid])
            _emit_bp(rng, ref, events, pid, day, sys, dia)
        elif j == 1:
            events.add(pid, pick_codes(rng, ref, "cholesterol_tests", pid.size), day, np.round(np.clip(rng.normal(5.0, 1.0, pid.size), 2.5, 9.5), 1))
        elif j == 2:
            events.add(pid, pick_codes(rng, ref, "hba1c_tests", pid.size), day, np.clip(np.rint(rng.normal(40, 8, pid.size)), 25, 120))
        elif j == 3:
            # Smoking status: current smokers a current code; the others an ex-smoker or a
            # never / non-smoker code (a status recorded either way).
            cur = smoker[owner]
            other = np.where(rng.random(pid.size) < 0.5, pick_codes(rng, ref, "exsmok_cod", pid.size),
                             pick_codes(rng, ref, "smoking_never", pid.size))
            events.add(pid, np.where(cur, pick_codes(rng, ref, "lsmok_cod", pid.size), other), day)
        elif j == 4:
            # BMI or weight: a BMI value, a weight in kg, or (without a value) a BMI category code.
            kind = rng.random(pid.size)
            bmi = np.round(np.clip(rng.normal(29.0, 6.0, pid.size), 15.0, 60.0), 1)
            weight = np.round(np.clip(rng.normal(84.0, 18.0, pid.size), 40.0, 200.0), 1)
            with_value = kind < 0.85
            code = np.where(kind < 0.6, pick_codes(rng, ref, "bmival_cod", pid.size), pick_codes(rng, ref, "weight_snomed", pid.size))
            events.add(pid[with_value], code[with_value], day[with_value], np.where(kind < 0.6, bmi, weight)[with_value])
            events.add(pid[~with_value], pick_codes(rng, ref, "bmi_stage", int((~with_value).sum())), day[~with_value])
        else:
            events.add(pid, pick_codes(rng, ref, "alcohol_consumption_gmsde", pid.size), day)
    return {"p_smi": p_smi, "s_smi": s_smi, "p_htn": p_htn, "s_htn": s_htn}


def emit_lithium(rng, ref: Reference, people: People, conditions: dict[str, ConditionState], cal: Calendar,
                 events: EventBuffer) -> None:
    """Emit lithium issues: QOF's mental health register also holds people issued lithium in 6 months.

    A few registered adults with no SMI diagnosis get lithium in the last 6 months and join
    the SMI register (`conditions["smi"].on` and its expected prevalence follow); some on
    the register by diagnosis get lithium too (no change); and a few others had their last
    issue more than 6 months ago, which keeps them off.
    """
    n, r = people.n, cal.r
    smi = conditions["smi"]
    free = people.registered & (people.age >= 18) & ~smi.ever
    only = free & (rng.random(n) < LITHIUM_ONLY_RATE)
    recent = np.flatnonzero(only | (smi.on & (rng.random(n) < 0.2)))
    owner, _ = expand(rng.integers(1, 4, recent.size))
    pid = recent[owner]
    events.add(pid, pick_codes(rng, ref, "lithium", pid.size), uniform_days(rng, np.full(pid.size, r - 150), people.last[pid]))
    lapsed = np.flatnonzero(free & ~only & (rng.random(n) < LITHIUM_ONLY_RATE))
    events.add(lapsed, pick_codes(rng, ref, "lithium", lapsed.size),
               uniform_days(rng, np.full(lapsed.size, r - 700), np.full(lapsed.size, r - 200)))
    smi.on = smi.on | only
    smi.p_on = np.where(free, smi.p_on + LITHIUM_ONLY_RATE * (1.0 - smi.p_on), smi.p_on)


def emit_other_areas(rng, ref: Reference, people: People, conditions, cal: Calendar, events: EventBuffer) -> dict:
    """Emit the events later indicators need: smoking, BP case-finding, tests, QRISK, statins, flu, SABA.

    Patients on the SMI register are skipped for BP, lipids, HbA1c and smoking (their
    health-check events above must stay exactly as drawn), and hypertension patients for
    BP (their readings decide treated-to-target).

    Returns the drawn outcomes the ground truth needs: BP case-finding probabilities, who
    has a QRISK score of 10 or more as their latest in five years, who got a flu vaccine
    in the current campaign.
    """
    n, r, w0 = people.n, cal.r, cal.w0
    smi_on, htn_on = conditions["smi"].on, conditions["hypertension"].on
    dm_on, copd_on, ast_on = conditions["diabetes"].on, conditions["copd"].on, conditions["asthma"].on
    age, hi, dob = people.age, people.last, people.dob
    ten_years = int(10 * YEAR)

    # Smoking status for adults: current smoking ~22% in decile 1 down to ~8% in decile 10
    # (approximate ONS APS gradient).
    adult = (age >= 16) & ~smi_on
    current = adult & (rng.random(n) < 0.22 - 0.0155 * (people.decile - 1))
    ex = adult & ~current & (rng.random(n) < 0.30)
    coded = np.flatnonzero((current | ex) & (rng.random(n) < 0.9))
    owner, _ = expand(rng.integers(1, 7, coded.size))
    pid = coded[owner]
    day = uniform_days(rng, np.maximum(dob[pid] + int(16 * YEAR), r - ten_years), hi[pid])
    code = np.where(current[pid], pick_codes(rng, ref, "lsmok_cod", pid.size), pick_codes(rng, ref, "exsmok_cod", pid.size))
    events.add(pid, code, day)
    # Never-smokers: most have a never / non-smoker code recorded (a status, so recording
    # counts it); a few ex-smokers later get a non-smoker code (read as ex, still recorded).
    never = adult & ~current & ~ex
    owner, _ = expand(np.where(never & (rng.random(n) < 0.7), rng.integers(1, 4, n), 0))
    day = uniform_days(rng, np.maximum(dob[owner] + int(16 * YEAR), r - ten_years), hi[owner])
    events.add(owner, pick_codes(rng, ref, "smoking_never", owner.size), day)
    later = np.flatnonzero(ex & (rng.random(n) < 0.05))
    events.add(later, pick_codes(rng, ref, "smoking_never", later.size), uniform_days(rng, np.maximum(r - 700, dob[later]), hi[later]))

    # BP for people not on the hypertension register: 40+ with a reading in the last five
    # years at the OTHER_AREAS rate (fewer in Core20 and in Black groups); 18-39 sometimes.
    cfg = OTHER_AREAS["bp_case_finding_40plus_within_5y"]
    free = ~smi_on & ~htn_on
    p_recent = cfg["base_rate"] * np.where(people.is_core20, cfg["core20_multiplier"], 1.0) * np.where(people.eth6 == 3, cfg["black_multiplier"], 1.0)
    forty = free & (age >= 40)
    recent = forty & (rng.random(n) < p_recent)
    p_case_finding = np.where(forty, p_recent, 0.0)
    older_only = forty & ~recent & (rng.random(n) < 0.5)
    young = free & (age >= 18) & (age < 40) & (rng.random(n) < 0.7)
    n_recent = np.where(recent, rng.integers(2, 9, n), 0)
    n_older = np.where(recent, rng.integers(1, 7, n), 0) + np.where(older_only, rng.integers(1, 4, n), 0)
    n_young = np.where(young, rng.integers(1, 4, n), 0)
    o1, _ = expand(n_recent)
    o2, _ = expand(n_older)
    o3, _ = expand(n_young)
    pid = np.concatenate([o1, o2, o3])
    day = np.concatenate([
        uniform_days(rng, np.full(o1.size, r - 1800), hi[o1]),  # safely inside five years
        np.minimum(uniform_days(rng, np.full(o2.size, r - ten_years), np.full(o2.size, r - 1900)), hi[o2]),
        uniform_days(rng, np.maximum(dob[o3] + int(16 * YEAR), r - ten_years), hi[o3]),
    ])
    sys, dia = _normal_bp(rng, age[pid])
    _emit_bp(rng, ref, events, pid, day, sys, dia)

    # Cholesterol and HbA1c tests for adults 40+ (NHS Health Check style), and six-monthly
    # HbA1c for people with diabetes.
    for codelist, mean, sd, lo_v, hi_v, digits in (("cholesterol_tests", 5.0, 1.0, 2.5, 9.5, 1), ("hba1c_tests", 38.0, 6.0, 25.0, 120.0, 0)):
        tested = free | (htn_on & ~smi_on)
        owner, _ = expand(np.where(tested & (age >= 40) & (rng.random(n) < 0.65), rng.integers(1, 8, n), 0))
        day = uniform_days(rng, np.full(owner.size, r - 2190), hi[owner])
        val = np.round(np.clip(rng.normal(mean, sd, owner.size), lo_v, hi_v), digits)
        events.add(owner, pick_codes(rng, ref, codelist, owner.size), day, val)
    dm = np.flatnonzero(dm_on & ~smi_on)
    owner, k = expand(np.full(dm.size, 6))
    pid = dm[owner]
    day = np.maximum(hi[pid] - k * 182 - rng.integers(0, 31, owner.size), dob[pid])
    events.add(pid, pick_codes(rng, ref, "hba1c_tests", pid.size), day, np.clip(np.rint(rng.normal(58, 12, pid.size)), 30, 140))

    # QRISK scores (value = 10-year CVD risk, %) for 40-84s, as NHS Health Checks record
    # them: one within the last five years (safely inside the window), and for some an
    # older one outside it, so that only the latest decides. Risk rises with age and is
    # higher for men (synthetic, roughly QRISK3's shape).
    cfg = LIBRARY_RATES["qrisk_recorded_5y_40_84"]
    scored = np.flatnonzero((age >= 40) & (age <= 84) & (rng.random(n) < cfg["base_rate"]))
    median = 2.5 * np.exp(0.075 * (age[scored] - 40)) * np.where(people.sex[scored] == "M", 1.4, 1.0)
    value = np.round(np.clip(median * np.exp(rng.normal(0.0, 0.45, scored.size)), 0.5, 60.0), 1)
    value = np.where(rng.random(scored.size) < 0.02, 10.0, value)  # some exactly at the threshold
    day = uniform_days(rng, np.full(scored.size, r - 1800), hi[scored])
    events.add(scored, pick_codes(rng, ref, "qriskscore_cod", scored.size), day, value)
    older = scored[rng.random(scored.size) < 0.3]
    older_value = np.round(np.clip(2.5 * np.exp(0.075 * (age[older] - 45)) * np.exp(rng.normal(0.0, 0.6, older.size)), 0.5, 60.0), 1)
    events.add(older, pick_codes(rng, ref, "qriskscore_cod", older.size),
               np.minimum(uniform_days(rng, np.full(older.size, r - 3650), np.full(older.size, r - 1900)), hi[older]), older_value)
    qrisk_high = np.zeros(n, dtype=bool)
    qrisk_high[scored] = value >= 10.0

    # Statins: repeat issues every 28 or 56 days from a start up to ten years back; some
    # hypertension patients (fewer in Core20), most adults with diabetes, some with a high
    # QRISK score (fewer in Core20) and a third of other over-60s (roughly NHS statin coverage).
    cfg = OTHER_AREAS["hypertension_statin"]
    p = np.where(htn_on, cfg["base_rate"] * np.where(people.is_core20, cfg["core20_multiplier"], 1.0), 0.0)
    p = np.where(dm_on & (age >= 40), np.maximum(p, 0.7), p)
    q = LIBRARY_RATES["qrisk_high_statin"]
    p = np.where(qrisk_high & ~htn_on & ~dm_on, q["base_rate"] * np.where(people.is_core20, q["core20_multiplier"], 1.0), p)
    p = np.where((age >= 60) & ~htn_on & ~dm_on & ~qrisk_high, 0.3, p)
    users = np.flatnonzero(rng.random(n) < p)
    start = np.maximum(hi[users] - rng.integers(90, 3653, users.size), dob[users] + int(30 * YEAR))
    stop = np.where(rng.random(users.size) < 0.15, start + np.floor(rng.random(users.size) * (hi[users] - start)).astype(np.int64), hi[users])
    interval = np.where(rng.random(users.size) < 0.8, 28, 56)
    count = np.clip((stop - start) // interval + 1, 1, 150)
    product = pick_codes(rng, ref, "statin_medication", users.size)
    owner, k = expand(count)
    day = np.minimum(start[owner] + k * interval[owner] + rng.integers(0, 7, owner.size), hi[users][owner])
    events.add(users[owner], product[owner], day)

    # Flu vaccination: COPD register at the OTHER_AREAS rate for the current campaign,
    # also 65+ and people with asthma or diabetes; the nine previous campaigns too.
    cfg = OTHER_AREAS["copd_flu_current_campaign"]
    p_copd = cfg["base_rate"] * np.where(people.is_core20, cfg["core20_multiplier"], 1.0)
    eligible = (age >= 65) | ast_on | dm_on
    flu_current = np.zeros(n, dtype=bool)
    for back in range(10):  # ten campaigns
        cs = day_number(cal.campaign_start.replace(year=cal.campaign_start.year - back))
        p = np.where(copd_on, p_copd if back == 0 else 0.75, np.where(eligible, 0.70, 0.0))
        got = np.flatnonzero((rng.random(n) < p) & (hi >= cs))
        if back == 0:
            flu_current[got] = True
        end = np.minimum(cs + 120, hi[got])
        day = cs + np.floor(rng.random(got.size) ** 2 * (end - cs + 1)).astype(np.int64)
        events.add(got, pick_codes(rng, ref, "flu_cod", got.size), day)

    # SABA reliever issues for asthma: over-dispersed counts (gamma-Poisson, shape 1.2) so
    # some have 6+ a year, more in Core20; plus two earlier years. Issues in the last year
    # fall on distinct days (one product per patient: two on a day would be one row).
    cfg = OTHER_AREAS["asthma_saba_issues_per_year"]
    ast = np.flatnonzero(ast_on)
    mean = cfg["mean"] * np.where(people.is_core20[ast], cfg["core20_multiplier"], 1.0) * np.where(age[ast] < 18, 1.1, 1.0)
    lam = rng.gamma(1.2, mean / 1.2)
    product = pick_codes(rng, ref, "saba_inhalers_resp02", ast.size)
    n_recent = np.minimum(rng.poisson(lam), 300)
    o1, k1 = expand(n_recent)
    o2, _ = expand(rng.poisson(2 * lam))
    owner = np.concatenate([o1, o2])
    shift = rng.random(ast.size)  # one per patient: evenly spaced offsets stay distinct
    recent_day = hi[ast][o1] - np.floor((k1 + shift[o1]) * 364 / n_recent[o1]).astype(np.int64)
    day = np.concatenate([
        np.maximum(recent_day, w0),
        np.minimum(uniform_days(rng, np.full(o2.size, w0 - 730), np.full(o2.size, w0 - 1)), hi[ast][o2]),
    ])
    pid = ast[owner]
    events.add(pid, product[owner], np.maximum(day, dob[pid]))
    saba_mean = np.zeros(n)
    saba_mean[ast] = mean
    return {"p_case_finding": p_case_finding, "qrisk_high": qrisk_high, "flu_current": flu_current,
            "p_flu_copd": p_copd, "saba_mean": saba_mean}


def emit_library_events(rng, ref: Reference, people: People, conditions, latest_dx: dict, cal: Calendar,
                         events: EventBuffer) -> dict:
    """Emit diabetes type codes, CGM issues, CYP diabetes BP, pneumococcal and COVID vaccines.

    Each outcome is drawn directly with its probability p_i (returned for the ground truth),
    and the events written make exactly that outcome true under the definitions' rules.
    """
    n, w0 = people.n, cal.w0
    age, hi, dob = people.age, people.last, people.dob
    dm_on, copd_on = conditions["diabetes"].on, conditions["copd"].on
    cyp = age <= CYP_MAX_AGE

    # Diabetes type, coded on the latest diagnosis day (so the register state is unchanged);
    # a few patients carry no type code at all (they are in no type-specific denominator).
    shares = LIBRARY_RATES["diabetes_type1_share"]
    type1 = dm_on & (rng.random(n) < np.where(cyp, shares["cyp"], shares["adults"]))
    typed = dm_on & (rng.random(n) < shares["type_coded"])
    who = np.flatnonzero(typed)
    code = np.where(type1[who], pick_codes(rng, ref, "dmtype1_cod", who.size), pick_codes(rng, ref, "dmtype2_cod", who.size))
    events.add(who, code, latest_dx["diabetes"][who])

    # CGM / flash monitor issues for CYP with type 1: 2-6 issues in the window when drawn,
    # otherwise sometimes one lapsed issue before it.
    cyp_t1 = typed & type1 & cyp
    p_cgm = np.where(cyp_t1, multiplied_rate(LIBRARY_RATES["cyp_type1_cgm_12m"], people), 0.0)
    s_cgm = cyp_t1 & (rng.random(n) < p_cgm)
    users = np.flatnonzero(s_cgm)
    owner, _ = expand(rng.integers(2, 7, users.size))
    pid = users[owner]
    events.add(pid, pick_codes(rng, ref, "diabetes_cgm_dmd", pid.size), uniform_days(rng, np.full(pid.size, w0), hi[pid]))
    lapsed = np.flatnonzero(cyp_t1 & ~s_cgm & (rng.random(n) < 0.25))
    day = np.maximum(uniform_days(rng, np.full(lapsed.size, w0 - 700), np.full(lapsed.size, w0 - 1)), dob[lapsed])
    events.add(lapsed, pick_codes(rng, ref, "diabetes_cgm_dmd", lapsed.size), day)

    # Blood pressure for CYP with diabetes (their HbA1c comes with every diabetic's
    # six-monthly tests): a reading in the window when drawn, else sometimes an older one.
    cyp_dm = dm_on & cyp
    p_bp = np.where(cyp_dm, multiplied_rate(LIBRARY_RATES["cyp_diabetes_bp_12m"], people), 0.0)
    s_bp = cyp_dm & (rng.random(n) < p_bp)
    measured = np.flatnonzero(s_bp)
    old = np.flatnonzero(cyp_dm & ~s_bp & (rng.random(n) < 0.5))
    pid = np.concatenate([measured, old])
    day = np.concatenate([
        uniform_days(rng, np.full(measured.size, w0), hi[measured]),
        np.maximum(uniform_days(rng, np.full(old.size, w0 - 700), np.full(old.size, w0 - 1)), dob[old]),
    ])
    sys = np.clip(np.rint(rng.normal(100 + 1.2 * age[pid], 9)), 80, 140)
    dia = np.clip(np.rint(rng.normal(62, 7, pid.size)), 40, 90)
    _emit_bp(rng, ref, events, pid, day, sys, dia)

    # Epilepsy review for CYP on the epilepsy register: 1-2 review codes in the window when
    # drawn, otherwise sometimes one before it (an older review does not count).
    cyp_ep = conditions["epilepsy"].on & cyp
    p_review = np.where(cyp_ep, multiplied_rate(LIBRARY_RATES["cyp_epilepsy_review_12m"], people), 0.0)
    s_review = cyp_ep & (rng.random(n) < p_review)
    owner, _ = expand(np.where(s_review, rng.integers(1, 3, n), 0))
    events.add(owner, pick_codes(rng, ref, "epilepsy_review", owner.size), uniform_days(rng, np.full(owner.size, w0), hi[owner]))
    lapsed_review = np.flatnonzero(cyp_ep & ~s_review & (rng.random(n) < 0.5))
    events.add(lapsed_review, pick_codes(rng, ref, "epilepsy_review", lapsed_review.size),
               np.maximum(uniform_days(rng, np.full(lapsed_review.size, w0 - 700), np.full(lapsed_review.size, w0 - 1)), dob[lapsed_review]))

    # Pneumococcal vaccination for COPD (ever), and for some other over-65s.
    p_pneumo = np.where(copd_on, multiplied_rate(LIBRARY_RATES["copd_pneumococcal_ever"], people), 0.0)
    s_pneumo = copd_on & (rng.random(n) < p_pneumo)
    got = np.flatnonzero(s_pneumo | (~copd_on & (age >= 65) & (rng.random(n) < 0.6)))
    day = np.maximum(uniform_days(rng, hi[got] - 5000, hi[got]), dob[got] + int(2 * YEAR))
    events.add(got, pick_codes(rng, ref, "pneumococcal_vaccination_gmsde", got.size), np.minimum(day, hi[got]))

    # COVID-19 vaccination in the current autumn campaign for COPD (and some over-65s),
    # plus doses in the three previous campaigns.
    p_covid = np.where(copd_on, multiplied_rate(LIBRARY_RATES["copd_covid_current_campaign"], people), 0.0)
    s_covid = copd_on & (rng.random(n) < p_covid)
    for back in range(4):
        cs = day_number(cal.campaign_start.replace(year=cal.campaign_start.year - back))
        chosen = s_covid if back == 0 else (copd_on | (age >= 65)) & (rng.random(n) < 0.7)
        if back == 0:
            chosen = chosen | (~copd_on & (age >= 65) & (rng.random(n) < 0.5))
        got = np.flatnonzero(chosen & (hi >= cs))
        day = uniform_days(rng, np.full(got.size, cs), np.minimum(cs + 90, hi[got]))
        events.add(got, pick_codes(rng, ref, "covadm1_5", got.size), day)
    return {"type1": type1, "typed": typed, "p_cgm": p_cgm, "s_cgm": s_cgm, "p_bp_cyp": p_bp,
            "p_review": p_review, "s_review": s_review,
            "p_pneumo": p_pneumo, "s_pneumo": s_pneumo, "p_covid": p_covid, "s_covid": s_covid}


