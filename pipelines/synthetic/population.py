"""Who the synthetic patients are: home, practice, age, sex, registration, ethnic group and conditions.

Everything is drawn with numpy over the whole population at once; the only Python loops
run over a handful of categories (five ethnic groups, eight conditions), never over rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.synthetic.dates import Calendar, age_at
from pipelines.synthetic.parameters import AGE_BAND_SHARES, CONDITIONS, ETH6, ETH16_WITHIN, YEAR, ethnic_mix
from pipelines.synthetic.practices import PracticePlan, draw_homes
from pipelines.synthetic.reference import Reference


@dataclass
class People:
    n: int
    lsoa: np.ndarray
    postcode: np.ndarray  # index into ref.postcodes
    practice: np.ndarray  # index into plan.practices
    decile: np.ndarray
    is_core20: np.ndarray  # where the patient really lives (decile 1-2)
    dob: np.ndarray
    age: np.ndarray  # whole years at R
    sex: np.ndarray
    start: np.ndarray
    end: np.ndarray  # -1 when still registered
    last: np.ndarray  # last day events can carry: R, or the deregistration date
    registered: np.ndarray
    eth6: np.ndarray  # latent broad group 0-4 (true, whether or not recorded)
    eth16: np.ndarray  # latent grouping_16 (1-16)


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """Draw one category per row of a (n, k) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cum[:, -1]
    return (u[:, None] >= cum).sum(axis=1)


def draw_people(rng: np.random.Generator, ref: Reference, plan: PracticePlan, cal: Calendar) -> People:
    """Draw everyone's practice and home (see practices.py), age, sex, registration and ethnic group."""
    practice, pc = draw_homes(rng, plan)
    n = practice.size
    lsoa = ref.pc_lsoa[pc]
    decile = ref.lsoa_decile[lsoa]

    band = rng.choice(AGE_BAND_SHARES.size, size=n, p=AGE_BAND_SHARES / AGE_BAND_SHARES.sum())
    age_years = band * 5 + rng.integers(0, 5, n)
    old = band == AGE_BAND_SHARES.size - 1
    age_years = np.where(old, 90 + np.minimum(rng.geometric(0.3, n) - 1, 14), age_years)
    dob = cal.r - np.floor((age_years + rng.random(n)) * YEAR).astype(np.int64)
    age = age_at(dob, cal.reference_date)

    # Women outnumber men in old age (approximate ONS shares); I and U are rare in GP data.
    female_share = np.where(age >= 80, 0.60, np.where(age >= 65, 0.53, 0.497))
    u = rng.random(n)
    sex = np.where(u < 0.0005, "I", np.where(u < 0.002, "U", np.where(rng.random(n) < female_share, "F", "M")))

    # Registration lengths: roughly exponential, mean ten years, never before birth.
    duration = np.floor(rng.exponential(10 * YEAR, n)).astype(np.int64)
    start = np.minimum(np.maximum(cal.r - 1 - duration, dob + rng.integers(0, 43, n)), cal.r)
    # About 1.5% left the practice before R: still in the extract, not on any register.
    leaving = (rng.random(n) < 0.015) & (start < cal.r)
    end_day = start + 1 + np.floor(rng.random(n) * (cal.r - start - 1)).astype(np.int64)
    end = np.where(leaving, end_day, -1)
    registered = (start <= cal.r) & ((end < 0) | (end > cal.r))
    last = np.where(end >= 0, np.minimum(end, cal.r), cal.r)

    eth6 = _categorical(rng, ethnic_mix(ref.lsoa_is_city[lsoa], decile))
    eth16 = np.zeros(n, dtype=np.int64)
    u = rng.random(n)
    for g, (groups, shares) in ETH16_WITHIN.items():  # five broad groups, not rows
        sel = eth6 == g
        cum = np.cumsum(shares) / np.sum(shares)
        eth16[sel] = np.asarray(groups)[np.minimum((u[sel, None] >= cum[None, :]).sum(axis=1), len(groups) - 1)]

    return People(
        n=n, lsoa=lsoa, postcode=pc, practice=practice, decile=decile, is_core20=decile <= 2,
        dob=dob, age=age, sex=sex, start=start, end=end, last=last, registered=registered,
        eth6=eth6, eth16=eth16,
    )


# --- conditions -----------------------------------------------------------------------------

@dataclass
class ConditionState:
    ever: np.ndarray
    on: np.ndarray  # on the register by construction (diagnosis after any resolution)
    resolved: np.ndarray
    rediagnosed: np.ndarray
    p_on: np.ndarray  # each person's probability of being on the register (the expected prevalence)


def draw_conditions(rng: np.random.Generator, people: People, cal: Calendar) -> dict[str, ConditionState]:
    """Draw who has each condition, and who has it resolved or resolved then re-diagnosed."""
    out: dict[str, ConditionState] = {}
    for c in CONDITIONS:  # eight conditions, each vectorised over everyone
        knots_age, knots_val = c.age_knots
        raw = np.interp(people.age, knots_age, knots_val)
        raw = raw * c.deprivation_ratio ** ((10 - people.decile) / 9.0)
        raw = raw * np.asarray(c.ethnicity_multipliers)[people.eth6]
        if c.name == "epilepsy":
            raw = raw * np.where(out["ld"].ever, 8.0, 1.0)  # epilepsy is far commoner with LD
        scope = people.age >= c.min_scope_age
        p_register = c.target * raw / max(raw[scope].mean(), 1e-12)
        p_ever = np.clip(p_register / (1.0 - c.resolved_share), 0.0, 0.95)
        ever = rng.random(people.n) < p_ever
        v = rng.random(people.n)
        resolved = ever & (v < c.resolved_share)
        rediag = ever & (v >= c.resolved_share) & (v < c.resolved_share + c.rediagnosed_share)
        out[c.name] = ConditionState(
            ever=ever, on=ever & ~resolved, resolved=resolved, rediagnosed=rediag, p_on=p_ever * (1.0 - c.resolved_share)
        )
    return out


# --- outcome probabilities: base rate x Core20 x ethnic-group multipliers ------------------

def drawn_rate(cfg: dict, people: People) -> np.ndarray:
    """Return p_i = base rate x Core20 multiplier x ethnic-group multiplier, clipped to [0, 1]."""
    eth = np.array([cfg["ethnicity_multipliers"][g] for g in ETH6])
    p = cfg["base_rate"] * np.where(people.is_core20, cfg["core20_multiplier"], 1.0) * eth[people.eth6]
    return np.clip(p, 0.0, 1.0)


def multiplied_rate(cfg: dict, people: People) -> np.ndarray:
    """Return base rate x Core20 multiplier x ethnic-group multiplier (missing keys: 1), clipped to [0, 1]."""
    eth = np.array([cfg.get("ethnicity_multipliers", {}).get(g, 1.0) for g in ETH6])
    p = cfg["base_rate"] * np.where(people.is_core20, cfg.get("core20_multiplier", 1.0), 1.0) * eth[people.eth6]
    return np.clip(p, 0.0, 1.0)


