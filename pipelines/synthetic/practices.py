"""Which practices register the synthetic patients, at what size, and where their patients live.

List sizes are real: NHS Digital's *Patients Registered at a GP Practice*, January 2021
(`gp_list_sizes` in the reference manifest), read through `reference_data.loader`.
The practices are the ICB's active GP practices in ODS epraccur (September 2025).

**Practices without a list size.** 2 of the 129 active practices of the default ICB (QT1),
47 of 6,220 in England, have no row in the January 2021 file. Most held no registered list
when it was counted - extended-access hubs, walk-in centres, specialist and Special
Allocation Scheme services (QT1's two are an extended-access hub and a SAS practice) - and
the rest opened later, at a size the file cannot tell. They register no synthetic
patients: a size for them would be invented reference data, and giving them a typical
list (the generator's earlier rule, the ICB median) put thousands of patients on a hub that
registers nobody. Their codes and count are recorded in the ground truth.

**Fewer patients than the ICB.** The ICB's practices hold 1.19 million patients (QT1);
a 20,000-patient demo cannot hold 127 practices at their real sizes. Shrinking every
practice by the same factor would give 127 practices of about 160 patients: every
practice row of the gap table a small count, and the practice-level suppression and
data-quality gate exercised on sizes no ICS has. Instead the extract holds a *subset* of
practices at their real relative sizes, scaled by one common factor `scale` = patients /
their total list, with the subset chosen so that `scale` is close to 1: each practice is
about its real size. A subset drawn at random would make the demo's deprivation and ethnic
mix that of two or three neighbourhoods (Core20 anywhere from 2% to 56% of a
20,000-patient demo), so it is chosen as in balanced sampling by restricted
randomisation: `PRACTICE_CANDIDATES` seeded candidate subsets (practices in a random order,
taken until their total list is closest to the requested patients) are scored on how far
their catchments' expected Core20 share and ethnic-minority share depart from the ICB's,
and their scale from 1, and the best is kept. Every candidate starts with one of the ICB's
smallest tenth of practices (QT1: 3,808 patients or fewer, including its 33-patient Special
Allocation Scheme practice), so that even a demo shows what disclosure control and the
practice-level gates do to a small practice - at that practice's real size, not at a size
made small by scaling. Measured over seeds 0-199 (`plan_practices` on QT1): a
20,000-patient extract holds 2-5 practices (3 in most), scale 0.88-1.14, expected Core20
share 23-28% against the ICB's 25.4%, ethnic-minority share 14-19% against 16%; a
1,000,000-patient one 100-114 practices at scale 0.99-1.01. An extract at least as large
as the ICB's registered population keeps every practice (scale >= 1: a 5M-patient
benchmark is a larger ICS of the same shape).

**Where patients live.** A practice's patients live where it draws from: the share of
residents at each live postcode (its LSOA's mid-2015 population spread over its live
postcodes) times the practice's pull on that postcode among *all* the ICB's practices
(list size x exp(-distance / 2 km), Code-Point centroids), so a sampled practice keeps its
own catchment rather than absorbing its unsampled neighbours'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.synthetic.parameters import (
    PRACTICE_CANDIDATES,
    PRACTICE_DISTANCE_DECAY_M,
    PRACTICE_SCALE_TOLERANCE,
    PRACTICE_SHARE_TOLERANCE,
    ethnic_mix,
)
from pipelines.synthetic.reference import Reference

LIST_SIZE_DATE = date(2021, 1, 1)
# An extract smaller than the ICB always holds one of its smallest tenth of practices.
SMALL_PRACTICE_QUANTILE = 0.1


@dataclass(frozen=True)
class Practices:
    """The ICB's practices that can register synthetic patients, and their catchments."""

    codes: pl.Series  # ODS codes, sorted
    list_size: np.ndarray  # January 2021 registered patients
    catchment: np.ndarray  # (n_postcodes, n_practices): share of all residents living at p registered at j
    core20_share: np.ndarray  # expected share of each practice's patients living in IMD 2019 deciles 1-2
    minority_share: np.ndarray  # expected share of each practice's patients in an ethnic-minority group
    without_list_size: tuple[str, ...]  # active practices with no January 2021 list size (register nobody)
    without_centroid: tuple[str, ...]  # active practices whose postcode has no Code-Point centroid
    n_active: int  # active GP practices of the ICB in epraccur

    @property
    def total_list_size(self) -> int:
        return int(self.list_size.sum())

    def share(self, shares: np.ndarray, among: np.ndarray | None = None) -> float:
        """Return a practice-level share averaged over the registered patients of `among` (default: all)."""
        among = np.arange(self.list_size.size) if among is None else among
        return float(shares[among] @ self.list_size[among] / self.list_size[among].sum())


@dataclass(frozen=True)
class PracticePlan:
    """The practices one extract uses and the patients each registers."""

    practices: Practices
    chosen: np.ndarray  # indices into practices, sorted
    n_patients: np.ndarray  # patients registered at each chosen practice

    @property
    def scale(self) -> float:
        """Patients per January 2021 registered patient at the chosen practices."""
        return float(self.n_patients.sum() / self.practices.list_size[self.chosen].sum())

    def summary(self) -> dict:
        """Return what the ground truth records: the rule's inputs and outcome (practice-level, public data)."""
        p = self.practices
        return {
            "list_size_source": f"NHS Digital patients registered at a GP practice, {LIST_SIZE_DATE:%B %Y}",
            "n_active_practices_in_icb": p.n_active,
            "without_list_size": list(p.without_list_size),
            "without_centroid": list(p.without_centroid),
            "icb_total_list_size": p.total_list_size,
            "n_practices": int(self.chosen.size),
            "scale": self.scale,
            "expected_core20_share": {"extract": p.share(p.core20_share, self.chosen), "icb": p.share(p.core20_share)},
            "expected_minority_share": {"extract": p.share(p.minority_share, self.chosen), "icb": p.share(p.minority_share)},
            "practices": {
                code: {"list_size_2021_01": int(size), "n_patients": int(n)}
                for code, size, n in zip(p.codes.gather(self.chosen).to_list(), p.list_size[self.chosen], self.n_patients)
            },
        }


def load_practices(ref: Reference, icb_code: str, reference_dir: str | Path | None) -> Practices:
    """Return the ICB's active practices with a list size and a centroid, and their catchments."""
    from reference_data import loader

    active = (
        loader.read_gp_practices(reference_dir)
        .filter((pl.col("icb_code") == icb_code) & pl.col("is_active"))
        .select("practice_code", pl.col("postcode").str.to_uppercase().str.strip_chars())
        .join(loader.read_gp_list_sizes(reference_dir), on="practice_code", how="left")
        .sort("practice_code")
    )
    centroids = (
        loader.scan_postcode_centroids(reference_dir)
        .filter(pl.col("postcode").is_in(active["postcode"].drop_nulls().implode()))
        .select("postcode", "easting", "northing")
        .collect()
    )
    located = active.join(centroids, on="postcode", how="left")
    without_centroid = located.filter(pl.col("easting").is_null())["practice_code"]
    without_list = located.filter(pl.col("list_size").is_null() | (pl.col("list_size") <= 0))["practice_code"]
    usable = located.filter(pl.col("easting").is_not_null() & (pl.col("list_size") > 0)).sort("practice_code")
    if usable.is_empty():
        raise ValueError(
            f"ICB {icb_code!r} has no active GP practice with both a January 2021 list size "
            "(gp_list_sizes) and a Code-Point centroid for its postcode (postcode_centroids)"
        )
    size = usable["list_size"].to_numpy().astype(np.float64)
    distance = np.hypot(
        ref.pc_easting[:, None] - usable["easting"].to_numpy()[None, :],
        ref.pc_northing[:, None] - usable["northing"].to_numpy()[None, :],
    )
    # Each home chooses among all practices in proportion to size x exp(-d / decay); the
    # row maximum is taken out before exp so that no row underflows however remote.
    pull = np.log(size)[None, :] - distance / PRACTICE_DISTANCE_DECAY_M
    del distance
    pull -= pull.max(axis=1, keepdims=True)
    np.exp(pull, out=pull)
    pull /= pull.sum(axis=1, keepdims=True)
    catchment = pull * ref.pc_weight[:, None]
    decile = ref.lsoa_decile[ref.pc_lsoa]
    mix = ethnic_mix(ref.lsoa_is_city[ref.pc_lsoa], decile)
    minority = mix[:, 1:].sum(axis=1) / mix.sum(axis=1)
    drawn = catchment.sum(axis=0)
    return Practices(
        codes=usable["practice_code"],
        list_size=usable["list_size"].to_numpy().astype(np.int64),
        catchment=catchment,
        core20_share=((decile <= 2) @ catchment) / drawn,
        minority_share=(minority @ catchment) / drawn,
        without_list_size=tuple(without_list.to_list()),
        without_centroid=tuple(c for c in without_centroid.to_list() if c not in set(without_list.to_list())),
        n_active=active.height,
    )


def plan_practices(rng: np.random.Generator, practices: Practices, n_patients: int) -> PracticePlan:
    """Choose the practices an extract of `n_patients` uses and how many patients each registers.

    Every candidate takes practices in a seeded random order until their total list is
    closest to `n_patients`; the best-balanced of `PRACTICE_CANDIDATES` candidates is
    kept (see the module docstring). Patients are then shared out in proportion to the
    chosen practices' list sizes by largest remainders, so each practice holds its real
    size times one common scale, to within one patient.

    Examples:
        >>> p = Practices(pl.Series(["A", "B", "C"]), np.array([1000, 3000, 6000]), np.ones((1, 3)),
        ...               np.array([0.1, 0.2, 0.3]), np.zeros(3), (), (), 3)
        >>> plan = plan_practices(np.random.default_rng(1), p, 20_000)  # larger than the ICB: all, scaled x2
        >>> plan.chosen.tolist(), plan.n_patients.tolist(), plan.scale
        ([0, 1, 2], [2000, 6000, 12000], 2.0)
        >>> plan = plan_practices(np.random.default_rng(1), p, 3_000)  # A, the small one, always; then B fits best
        >>> p.codes.gather(plan.chosen).to_list(), plan.n_patients.tolist(), plan.scale
        (['A', 'B'], [750, 2250], 0.75)
    """
    size = practices.list_size.astype(np.float64)
    if n_patients >= size.sum():
        chosen = np.arange(size.size)
    else:
        target_core20, target_minority = practices.share(practices.core20_share), practices.share(practices.minority_share)
        # The ICB's smallest tenth of practices by list size: every candidate starts with one.
        small = np.flatnonzero(size <= np.quantile(size, SMALL_PRACTICE_QUANTILE))

        def candidate() -> np.ndarray:
            first = small[rng.integers(small.size)]
            rest = rng.permutation(size.size)
            order = np.concatenate([[first], rest[rest != first]])
            total = np.cumsum(size[order])
            k = int(np.searchsorted(total, n_patients))
            if k > 0 and n_patients - total[k - 1] < total[k] - n_patients:
                k -= 1
            return order[: k + 1]

        def departure(subset: np.ndarray) -> float:
            return (
                ((practices.share(practices.core20_share, subset) - target_core20) / PRACTICE_SHARE_TOLERANCE) ** 2
                + ((practices.share(practices.minority_share, subset) - target_minority) / PRACTICE_SHARE_TOLERANCE) ** 2
                + (np.log(n_patients / size[subset].sum()) / np.log(PRACTICE_SCALE_TOLERANCE)) ** 2
            )

        candidates = [candidate() for _ in range(PRACTICE_CANDIDATES)]
        scores = [departure(c) for c in candidates]
        chosen = np.sort(candidates[int(np.argmin(scores))])
    quota = n_patients * size[chosen] / size[chosen].sum()
    counts = np.floor(quota).astype(np.int64)
    short = n_patients - int(counts.sum())
    # Largest remainders, ties to the lower index, so the shares are exact and reproducible.
    counts[np.argsort(-(quota - counts), kind="stable")[:short]] += 1
    return PracticePlan(practices=practices, chosen=chosen, n_patients=counts)


def draw_homes(rng: np.random.Generator, plan: PracticePlan) -> tuple[np.ndarray, np.ndarray]:
    """Return each patient's practice (index into plan.practices) and home postcode (index into ref.postcodes).

    Each practice's patients are drawn from its own catchment, then the rows are shuffled so
    that the extract is not sorted by practice.
    """
    u = rng.random(int(plan.n_patients.sum()))
    practice = np.repeat(plan.chosen, plan.n_patients)
    postcode = np.empty(u.size, dtype=np.int64)
    start = 0
    for j, n in zip(plan.chosen, plan.n_patients):  # one pass per practice, vectorised over its patients
        cum = np.cumsum(plan.practices.catchment[:, j])
        postcode[start:start + n] = np.minimum(np.searchsorted(cum, u[start:start + n] * cum[-1], side="right"), cum.size - 1)
        start += n
    order = rng.permutation(u.size)
    return practice[order], postcode[order]
