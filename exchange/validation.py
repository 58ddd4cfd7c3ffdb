"""``lienthong validate``: everything about a package except who signed it.

Parsing, the contract (XSD and rule pass) and attachment decoding, with every failure
turned into a ``Problem`` so that an integrator sees them as one list.
"""

from __future__ import annotations

from dataclasses import dataclass

from exchange import contract
from exchange.attachments import AttachmentLimits
from exchange.errors import AttachmentBomb, AttachmentInvalid, MalformedXml, Problem, SenderFault
from exchange.extract import attachments_of
from exchange.model import Kind
from exchange.xmlsafe import ParseLimits, parse


@dataclass(frozen=True)
class Validation:
    kind: Kind | None
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def ok(self) -> bool:
        return not self.errors


def validate(
    data: bytes,
    *,
    strict: bool = False,
    parse_limits: ParseLimits | None = None,
    attachment_limits: AttachmentLimits | None = None,
) -> Validation:
    try:
        root = parse(data, parse_limits).getroot()
    except MalformedXml as exc:
        return Validation(None, (Problem(exc.line, "/", exc.message, exc.code),))
    except SenderFault as exc:
        return Validation(None, (Problem(None, "/", exc.message, exc.code),))
    kind, problems = contract.check(root, strict=strict)
    if not any(p.severity == "error" for p in problems) and kind is Kind.EDOC:
        try:
            attachments_of(root, attachment_limits or AttachmentLimits())
        except (AttachmentInvalid, AttachmentBomb) as exc:
            problems.append(Problem(None, "/edXML/AttachmentEncoded", exc.message, exc.code))
    return Validation(kind, tuple(problems))
