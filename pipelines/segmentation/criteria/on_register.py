"""`on_register`: on a QOF-style register at R (see `definitions.Register`)."""

from __future__ import annotations

from pipelines.segmentation.criteria.base import Criterion, EvidenceContext, Identifier, ModelContext


class OnRegister(Criterion):
    """On the named register at R.

    Examples:
        >>> OnRegister(on_register="smi_register").describe()
        'on register smi_register'
    """

    key = "on_register"
    on_register: Identifier

    def uses(self) -> list[tuple[str, str]]:
        return [("register", self.on_register)]

    def check(self, registers: set[str], cohorts: set[str]) -> list[tuple[str, str]]:
        return [] if self.on_register in registers else [("", f"unknown register '{self.on_register}'")]

    def describe(self) -> str:
        return f"on register {self.on_register}"

    def compile(self, model: ModelContext) -> str:
        return model.register(self.on_register)

    def evidence(self, patient: EvidenceContext) -> str:
        return patient.register(self.on_register)
