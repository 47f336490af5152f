"""Synthetic practice-register extracts with known, injected inequality gaps (`core20 synth`).

The extract is a test oracle for the whole pipeline and the data of its demo: patients
live at real live postcodes of one ICB, are registered at its real active practices at
their real relative list sizes, and carry real SNOMED CT / dm+d codes from the pinned
codelists. Nothing clinical or geographic is invented; only the people are. Every
register and every available indicator of the library (and Core20 by IMD 2019) has a
ground truth written beside the extract - the realised count and, where the generator
draws the outcome directly, its expected rate - so a run can be checked against what was
injected. Where the outcome is drawn, the ground truth also holds the expected rate of
every group the gap table will show for Core20 vs rest and for broad ethnicity (groups as
the pipeline observes them, after the injected defects) and the expected gap of each
against the table's reference group, so the published gaps can be checked against the
injected ones. The optional linked feeds (maternity, cancer registry, HES tooth
extractions, MHSDS contacts) are written too, unless `include_feeds=False`.

It is a product feature (demos, tests, benchmarks), not domain logic, so it lives apart
from `pipelines.segmentation`, whose rules it must not share: the ground truth is computed
independently of the pipeline's engine.

Modules, in the order a generation uses them:

- `parameters`: every injected rate, prevalence, mix and multiplier;
- `reference`: the ICB's LSOAs, live postcodes and codelists, from the pinned reference files;
- `practices`: which practices register patients, at what size, and where their patients live;
- `population`: homes, practices, ages, sexes, registrations, ethnic groups, conditions;
- `clinical`: register diagnoses, ethnicity codes and the events behind each indicator;
- `feeds`: the optional linked secondary-care feeds;
- `defects`: postcode and ethnicity defects (duplicate event rows: `events`);
- `events`: the event buffer that assembles, de-duplicates and orders every event row;
- `ground_truth`: what was injected, as the pipeline can observe it;
- `generate`: `generate_extract`, which runs the above and writes the files.

Performance matters (a 1M-patient extract in about ten seconds on two cores), so
everything is vectorised with numpy over whole cohorts; no Python loop visits a row.
Determinism matters too (a test oracle that moves is useless): one numpy
Generator(PCG64(seed)) drives every draw, in a fixed order; reference frames are sorted
before use; the same arguments give byte-identical files.
"""

from pipelines.synthetic.dates import default_reporting_month
from pipelines.synthetic.generate import generate_extract
from pipelines.synthetic.parameters import CYP_MAX_AGE, FLU_CAMPAIGN_START, GENERATOR, IMD_VINTAGE, RELIEVER_THRESHOLD

__all__ = [
    "CYP_MAX_AGE",
    "FLU_CAMPAIGN_START",
    "GENERATOR",
    "IMD_VINTAGE",
    "RELIEVER_THRESHOLD",
    "default_reporting_month",
    "generate_extract",
]
