"""An ICB's re-run after its month's national roll-up: suppressed with the national release in a reader's hands.

A national release shows every ICB, region and England side by side. When an ICB's extract
is re-sent after it (a correction, a late practice), the partition re-runs and publishes the
ICB's rows again, linked to its ICS's earlier release (`partition.carry_releases`). That is
not enough: a reader also holds the national release, whose region and England rows are sums
over this ICB and its neighbours as they were. Knowing the exact change, the reader turns the
ICB's new rows into its old ones, and the region's row minus them into an unchanged
neighbour's hidden count (measured: one practice's lipid_statin numerator pinned,
`tests/pipeline/test_national_rollup_resend.py`).

So before the re-run is committed, `hidden_for_national_release` audits its candidate in the
national problem (`rollup.national_problem`, the roll-up's own) as a reader would hold it then:

- every other ICB as its ICS published it (hidden stays hidden, shown is never a complement);
- the regions and England as nothing new: every row of theirs hidden in this release, what
  the national release(s) showed of them linked as earlier releases, with the known change
  (`rollup.earlier_releases`: the national record and the ICSs' earlier releases);
- this ICB's candidate: what it hides is hidden, what it shows may still be hidden.

Complements can come only from this ICB's shown rows, the only thing being published, and
each one changes the ICS's release, so one is chosen only for a count short of its need in
its whole part (`protect_month(dear_complements=True)`), beyond what the releases already out
allow: an unchanged re-run hides nothing. The reader holding the ICS releases without the
national one sees no sum across ICBs; the ICB month's own audit protects them
(`alone_pass=False`). The units the audit hides there go back into the ICB month
(`releases.write_forced_hidden`), which runs again with them hidden from the start, so its
every table, statistic and release record follows from one suppression; the loop ends when
the audit hides nothing more (`partition.run_icb_month`).
"""

from __future__ import annotations

import time
from datetime import date

import polars as pl

from pipelines.national.store import NATIONAL, PartitionStore


def hidden_for_national_release(store: PartitionStore, icb: str, key: str, tables: dict[str, pl.DataFrame], info: dict, *,
                                reference_dir: str | None = None, progress=None) -> tuple[set, dict]:
    """Return (units the ICB's new run must also hide, figures); no units when no national release holds the ICB.

    Arguments:
        store: the partition store (the ICB's committed run is its previous release).
        icb, key: the partition (`key` YYYY-MM-01).
        tables, info: the new run's tables (`partition.export_partition`) and manifest fields,
            not yet committed.

    Returns:
        Unit names as the ICB month's `protect_month` takes them (`reporting_month` = the
        month): `(month, indicator_id, indicator_version, (imd_vintage, breakdown, group))` and
        `(month, 'deprivation_quality', imd_vintage, practice_code, column)`; and the figures of
        the audit (LP solves, seconds), without any count.
    """
    from pipelines.national.partition import PartitionFailed
    from pipelines.national.rollup import (earlier_releases, national_problem, national_record, own_releases,
                                           rollup_processes)
    from pipelines.segmentation.month_disclosure import protect_month

    record = national_record(store, key)
    released = (store.manifest(NATIONAL, key) or {}).get("icbs", [])
    if record is None or icb not in released:
        return set(), {}
    started = time.perf_counter()
    view = store.with_run(icb, key, tables, info)
    gone = [other for other in released if view.manifest(other, key) is None]
    if gone:
        raise PartitionFailed(f"the national release of {key[:7]} holds ICB(s) {', '.join(gone)}, whose partitions are no "
                              f"longer in the store: ICB {icb}'s re-run cannot be checked against that release")
    problem = national_problem(view, key, released, reference_dir)
    label, above = problem.labels[icb], problem.above()
    hidden, shown, _ = own_releases(view, key, released, problem.counts, problem.quality, problem.geographies,
                                    problem.labels, problem.profile)
    candidate = {name for name in shown if name[0] == label}
    # The areas above publish nothing in this release: a reader knows of them only what the
    # national release(s) showed (linked below, with the change since).
    hidden |= {(month, indicator, version, (vintage, breakdown, group))
               for month, indicator, version, vintage, breakdown, group
               in problem.combined.filter(pl.col("reporting_month").is_in(list(above)))
               .select("reporting_month", "indicator_id", "indicator_version", "imd_vintage", "breakdown", "group").rows()}
    columns = [c for c in problem.exact_quality.columns if c.startswith("n_")]
    hidden |= {(month, "deprivation_quality", vintage, practice, column)
               for month, vintage, practice in problem.exact_quality.filter(pl.col("reporting_month").is_in(list(above)))
               .select("reporting_month", "imd_vintage", "practice_code").rows() for column in columns}
    # Every release readers hold: the national record, each ICS's earlier releases and every
    # committed release of this ICB (its current one too: the new run is not out yet).
    earlier = earlier_releases(store, key, released, problem.labels, record, every_release_of=[icb])
    _, _, stats = protect_month(
        problem.combined, problem.relations, problem.profile, primary_vintage=problem.vintage,
        memberships=problem.memberships, quality=problem.exact_quality, sums=problem.sums, hidden=hidden,
        shown=shown - candidate, released_areas={problem.labels[other] for other in released}, earlier=earlier,
        # A reader holding the ICS releases without the national one sees no sum across ICBs: the
        # ICB month's own audit protects them.
        alone_pass=False, dear_complements=True, decisions=True, progress=progress, processes=rollup_processes())
    month = date.fromisoformat(key)
    more = {(month, *name[1:]) for name in stats["hidden"] & candidate}
    figures = {"n_units_hidden": len(more), "n_lp_solves": stats["n_lp_solves"], "n_complements": stats["n_complements"],
               "n_earlier_releases": stats["n_earlier_releases"], "seconds": round(time.perf_counter() - started, 3)}
    return more, figures
