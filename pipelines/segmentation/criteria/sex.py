"""`sex`: the patient's recorded sex is one of the listed codes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pipelines.segmentation.criteria.base import Criterion, EvidenceContext, ModelContext

SexCode = Literal["M", "F", "I", "U"]


class Sex(Criterion):
    """Recorded sex (the extract's M, F, I or U) in the list; no recorded sex fails.

    The screening programmes invite by the sex on the GP record (women for breast and
    cervical screening), so a programme's eligible group is stated with this rule.

    Examples:
        >>> Sex.model_validate({"sex": ["F"]}).describe()
        'recorded sex F'
    """

    key = "sex"
    sex: Annotated[list[SexCode], Field(min_length=1)]

    def describe(self) -> str:
        return f"recorded sex {' / '.join(self.sex)}"

    def compile(self, model: ModelContext) -> str:
        codes = ", ".join(f"'{code}'" for code in self.sex)
        return f"coalesce({model.attribute('sex')} in ({codes}), false)"

    def evidence(self, patient: EvidenceContext) -> str:
        return f"sex {patient.person.get('sex') or 'not recorded'}"
