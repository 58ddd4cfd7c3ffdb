"""The rule pass: what XSD 1.0 cannot say about free-order edXML.

The structural XSD accepts the elements in any order. This pass checks the rest:
which elements are required, which may appear once, and the formats of identifiers,
dates, timestamps and codes. It reports ``Problem`` values in the same form as the XSD
(line, element path, what was expected), so a caller sees one list.
"""

from __future__ import annotations

import re
from datetime import datetime

from lxml import etree

from exchange.edxml import kid, kids, line_of, local, path_of, q, text, walk
from exchange.errors import Problem
from exchange.model import STATUS_CODES, Kind

ORGAN_ID = re.compile(r"[0-9A-Za-z.]{1,35}")
DATE = re.compile(r"([0-9]{4})/([0-9]{2})/([0-9]{2})")
DATE_DMY = re.compile(r"([0-9]{2})/([0-9]{2})/([0-9]{4})")
TIMESTAMP = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
CONTENT_ID = re.compile(r"cid:\S{1,200}")

_ORGAN_FIELDS = (
    "OrganizationInCharge",
    "OrganName",
    "OrganAdd",
    "Email",
    "Telephone",
    "Fax",
    "Website",
)
_DOCUMENT_ONCE = (
    "Content",
    "SignerInfo",
    "DueDate",
    "ToPlaces",
    "OtherInfo",
    "SteeringType",
    "DocumentType",
    "ResponseForTask",
    "ApplicationType",
)
_STATUS_ONLY = ("StatusCode", "Timestamp", "Description", "StaffInfo")


MAX_PROBLEMS = 100
"""Past this many problems the rest are only counted: a hostile package with tens of
thousands of bad elements must not make the report itself the attack."""


class _Report:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.unreported = 0
        self._groups: dict[etree._Element, dict[str, list[etree._Element]]] = {}

    def children(self, parent: etree._Element, name: str) -> list[etree._Element]:
        """Children of ``parent`` called ``name``; each parent is scanned once."""
        groups = self._groups.get(parent)
        if groups is None:
            groups = {}
            for child in parent.iterchildren():
                tag = child.tag
                if isinstance(tag, str):
                    groups.setdefault(tag, []).append(child)
            self._groups[parent] = groups
        return groups.get(q(name), [])

    def add(
        self,
        el: etree._Element,
        message: str,
        code: str,
        severity: str = "error",
        *,
        at: etree._Element | None = None,
    ) -> None:
        """A problem reported at ``el`` (its path), on the line of ``at`` (default ``el``)."""
        if len(self.problems) >= MAX_PROBLEMS:
            self.unreported += 1
            return
        self.problems.append(
            Problem(
                line=line_of(at if at is not None else el),
                path=path_of(el),
                message=message,
                code=code,
                severity=severity,
            )
        )

    def cardinality(
        self, parent: etree._Element, name: str, *, low: int = 0, high: int | None = 1
    ) -> list[etree._Element]:
        found = self.children(parent, name)
        if len(found) < low:
            need = "is required" if low == 1 else f"is required at least {low} times"
            self.add(parent, f"element {name} {need} in {local(parent)}", "contract.cardinality")
        elif high is not None and len(found) > high:
            self.add(
                found[high],
                f"element {name} may appear at most {high} time(s) in {local(parent)}, "
                f"found {len(found)}",
                "contract.cardinality",
            )
        return found

    def one(self, parent: etree._Element, name: str) -> etree._Element | None:
        found = self.cardinality(parent, name, low=1, high=1)
        return found[0] if found else None

    def optional(self, parent: etree._Element, name: str) -> etree._Element | None:
        found = self.cardinality(parent, name, low=0, high=1)
        return found[0] if found else None

    def nonempty(self, el: etree._Element | None, what: str) -> str | None:
        if el is None:
            return None
        value = text(el)
        if value is None:
            self.add(el, f"{what} must not be empty", "contract.format")
        return value

    def pattern(
        self,
        el: etree._Element | None,
        regex: re.Pattern[str],
        expected: str,
        *,
        required: bool = True,
    ) -> str | None:
        if el is None:
            return None
        value = text(el)
        if value is None:
            if required:
                self.add(
                    el, f"{local(el)} must not be empty; expected {expected}", "contract.format"
                )
            return None
        if not regex.fullmatch(value):
            self.add(el, f"{local(el)} is {value!r}; expected {expected}", "contract.format")
            return None
        return value


def check_date(report: _Report, el: etree._Element | None, *, required: bool = True) -> None:
    if el is None:
        return
    value = text(el)
    if value is None:
        if required:
            report.add(el, f"{local(el)} must not be empty; expected yyyy/MM/dd", "contract.format")
        return
    match = DATE.fullmatch(value)
    if match:
        try:
            datetime(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            report.add(
                el, f"{local(el)} is {value!r}, which is not a calendar date", "contract.format"
            )
        return
    if DATE_DMY.fullmatch(value):
        report.add(
            el,
            f"{local(el)} is {value!r} in dd/MM/yyyy; the standard form is yyyy/MM/dd "
            "(read as day/month/year)",
            "contract.format",
            severity="warning",
        )
        return
    report.add(el, f"{local(el)} is {value!r}; expected yyyy/MM/dd", "contract.format")


def check_timestamp(report: _Report, el: etree._Element | None) -> None:
    value = report.pattern(el, TIMESTAMP, "yyyy/MM/dd HH:mm:ss")
    if el is not None and value is not None:
        try:
            datetime.strptime(value, "%Y/%m/%d %H:%M:%S")
        except ValueError:
            report.add(el, f"{local(el)} is {value!r}, which is not a real time", "contract.format")


def check_organ_id(report: _Report, el: etree._Element | None) -> None:
    report.pattern(el, ORGAN_ID, "an agency code of 0-9, A-Z, a-z and '.', at most 35 characters")


def check_organization(report: _Report, org: etree._Element) -> None:
    check_organ_id(report, report.one(org, "OrganId"))
    for name in _ORGAN_FIELDS:
        report.optional(org, name)


def check_response_for(report: _Report, rf: etree._Element, *, in_status: bool) -> None:
    if in_status:
        report.nonempty(report.one(rf, "DocumentId"), "ResponseFor/DocumentId")
    else:
        report.optional(rf, "DocumentId")
    organ = report.optional(rf, "OrganId")
    if organ is not None:
        check_organ_id(report, organ)
    report.optional(rf, "Code")
    check_date(report, report.optional(rf, "PromulgationDate"), required=False)


def check_integer_in(
    report: _Report, el: etree._Element | None, allowed: range, meaning: str
) -> None:
    if el is None:
        return
    value = text(el)
    if value is None or not (value.isascii() and value.isdigit()) or int(value) not in allowed:
        report.add(
            el,
            f"{local(el)} is {value!r}; expected {meaning}",
            "contract.format",
        )


def check_business(report: _Report, business: etree._Element) -> None:
    doc_type = report.one(business, "BussinessDocType")
    check_integer_in(report, doc_type, range(4), "0 (new), 1 (revoke), 2 (update) or 3 (replace)")
    report.optional(business, "DocumentId")
    report.optional(business, "BussinessDocReason")
    report.optional(business, "Paper")
    value = text(doc_type) if doc_type is not None else None
    info = report.optional(business, "BussinessDocumentInfo")
    replacements = report.optional(business, "ReplacementInfoList")
    if value == "2" and info is None:
        report.add(
            business,
            "an update (BussinessDocType 2) requires BussinessDocumentInfo",
            "contract.cardinality",
        )
    if value == "3" and replacements is None:
        report.add(
            business,
            "a replacement (BussinessDocType 3) requires ReplacementInfoList",
            "contract.cardinality",
        )
    if info is not None:
        for flag in ("DocumentInfo", "DocumentReceiver"):
            check_integer_in(report, report.optional(info, flag), range(2), "0 or 1")
        receivers = report.optional(info, "ReceiverList")
        for receiver in kids(receivers, "Receiver") if receivers is not None else []:
            check_organ_id(report, report.one(receiver, "OrganId"))
            check_integer_in(
                report, report.one(receiver, "ReceiverType"), range(2), "0 (removed) or 1 (added)"
            )
    if replacements is not None:
        items = report.cardinality(replacements, "ReplacementInfo", low=1, high=None)
        for item in items:
            report.nonempty(report.one(item, "DocumentId"), "ReplacementInfo/DocumentId")
            organs = report.one(item, "OrganIdList")
            if organs is not None:
                for organ in report.cardinality(organs, "OrganId", low=1, high=None):
                    check_organ_id(report, organ)


def check_trace(report: _Report, trace_list: etree._Element, kind: Kind) -> None:
    for trace in kids(trace_list, "TraceHeader"):
        # Real hops write OrganId "null" or leave it out; only the timestamp is required.
        organ = report.optional(trace, "OrganId")
        if organ is not None and text(organ) is not None:
            check_organ_id(report, organ)
        check_timestamp(report, report.one(trace, "Timestamp"))
    businesses = report.cardinality(trace_list, "Bussiness", high=1)
    if businesses and kind is Kind.EDOC:
        check_business(report, businesses[0])


def check_attachments(report: _Report, root: etree._Element) -> None:
    manifest_refs = []
    body = walk(root, "edXMLEnvelope", "edXMLBody")
    if body is not None:
        manifest = report.optional(body, "edXMLManifest")
        if manifest is not None:
            manifest_refs = kids(manifest, "Reference")
    declared: dict[str, etree._Element] = {}
    for ref in manifest_refs:
        cid_el = report.one(ref, "ContentId")
        cid = report.pattern(cid_el, CONTENT_ID, "cid: followed by an identifier")
        for name in ("ContentType", "Description", "AttachmentName"):
            report.optional(ref, name)
        if cid_el is not None and cid is not None:
            key = cid.removeprefix("cid:")
            if key in declared:
                report.add(cid_el, f"ContentId {cid!r} is declared twice", "contract.duplicate")
            declared[key] = cid_el
    encoded: dict[str, etree._Element] = {}
    holders = report.cardinality(root, "AttachmentEncoded", high=1)
    for attachment in kids(holders[0], "Attachment") if holders else []:
        cid_el = report.one(attachment, "ContentId")
        for name in ("AttachmentName", "Description", "ContentType"):
            report.optional(attachment, name)
        report.nonempty(report.one(attachment, "ContentTransferEncoded"), "ContentTransferEncoded")
        cid = text(cid_el) if cid_el is not None else None
        if cid_el is None or cid is None:
            continue
        key = cid.removeprefix("cid:")  # one .NET producer drops the prefix here
        if key in encoded:
            report.add(cid_el, f"attachment {cid!r} is carried twice", "contract.duplicate")
        encoded[key] = cid_el
        if key not in declared:
            report.add(
                cid_el,
                f"attachment {cid!r} is not declared in edXMLManifest",
                "contract.attachment_mismatch",
            )
    for key, cid_el in declared.items():
        if key not in encoded:
            report.add(
                cid_el,
                f"manifest reference cid:{key} has no Attachment in AttachmentEncoded",
                "contract.attachment_mismatch",
            )


def check_document_header(report: _Report, mh: etree._Element) -> None:
    sender = report.one(mh, "From")
    if sender is not None:
        check_organization(report, sender)
    for recipient in report.cardinality(mh, "To", low=1, high=None):
        check_organization(report, recipient)
    report.nonempty(report.one(mh, "DocumentId"), "DocumentId")
    code = report.one(mh, "Code")
    if code is not None:
        report.nonempty(report.one(code, "CodeNumber"), "CodeNumber")
        report.nonempty(report.one(code, "CodeNotation"), "CodeNotation")
    info = report.one(mh, "PromulgationInfo")
    if info is not None:
        report.optional(info, "Place")
        check_date(report, report.one(info, "PromulgationDate"))
    report.nonempty(report.one(mh, "Subject"), "Subject")
    for name in _DOCUMENT_ONCE:
        report.optional(mh, name)
    check_date(report, kid(mh, "DueDate"), required=False)
    other = kid(mh, "OtherInfo")
    if other is not None:
        check_integer_in(
            report,
            report.optional(other, "Priority"),
            range(5),
            "0 (normal) to 4 (scheduled flash)",
        )
    for rf in kids(mh, "ResponseFor"):
        # Real producers send <ResponseFor/> or a template of empty children in documents
        # that answer nothing; such a block says nothing and is not checked.
        if any(text(child) for child in rf.iterchildren()):
            check_response_for(report, rf, in_status=False)
    for name in _STATUS_ONLY:
        for stray in kids(mh, name):
            report.add(
                stray, f"{name} belongs to a status package, not a document", "contract.schema"
            )


def check_status_block(report: _Report, block: etree._Element) -> None:
    sender = report.one(block, "From")
    if sender is not None:
        check_organization(report, sender)
    rf = report.one(block, "ResponseFor")
    if rf is not None:
        check_response_for(report, rf, in_status=True)
    report.optional(block, "StaffInfo")
    report.optional(block, "Description")
    code = report.one(block, "StatusCode")
    if code is not None:
        value = text(code)
        if value not in STATUS_CODES:
            report.add(
                code,
                f"StatusCode is {value!r}; expected one of {', '.join(STATUS_CODES)}",
                "contract.format",
            )
    check_timestamp(report, report.one(block, "Timestamp"))


def check_markup_in_text(report: _Report, root: etree._Element) -> None:
    """A comment or processing instruction inside an element's text is refused.

    Canonicalisation without comments (what signatures use) drops them, so the text a
    signature covers and the text a reader of ``.text`` sees would differ: ``1<!---->25``
    is signed as "125" but reads as "1". Between elements they are harmless and allowed.
    """
    for node in root.iter(etree.Comment, etree.ProcessingInstruction):
        parent = node.getparent()
        if parent is None:
            continue
        before = node.getprevious()
        text_before = (before.tail if before is not None else parent.text) or ""
        if text_before.strip() or (node.tail or "").strip():
            what = "comment" if isinstance(node, etree._Comment) else "processing instruction"
            report.add(
                parent,
                f"a {what} inside the text of {local(parent)} is not allowed",
                "contract.schema",
                at=node,
            )


def rule_pass(root: etree._Element, kind: Kind) -> list[Problem]:
    report = _Report()
    check_markup_in_text(report, root)
    envelope = report.one(root, "edXMLEnvelope")
    if envelope is None:
        return report.problems
    head = report.one(envelope, "edXMLHeader")
    if head is None:
        return report.problems
    trace_lists = report.cardinality(head, "TraceHeaderList", high=1)
    if kind is Kind.STATUS:
        blocks = kids(head, "MessageHeader") + kids(head, "Status")
        if len(blocks) != 1:
            report.add(
                head,
                "a status package carries exactly one MessageHeader or Status, "
                f"found {len(blocks)}",
                "contract.cardinality",
            )
        if blocks:
            check_status_block(report, blocks[0])
        for stray in (*kids(envelope, "edXMLBody"), *kids(root, "AttachmentEncoded")):
            report.add(stray, f"a status package has no {local(stray)}", "contract.schema")
    else:
        report.cardinality(envelope, "edXMLBody", high=1)
        mh = report.one(head, "MessageHeader")
        if mh is not None:
            check_document_header(report, mh)
    if trace_lists:
        check_trace(report, trace_lists[0], kind)
    if kind is Kind.EDOC:
        check_attachments(report, root)
    if report.unreported:
        report.problems.append(
            Problem(
                None,
                "/",
                f"… and {report.unreported} more problem(s) of the same kinds, not listed",
                "contract.too_many_problems",
            )
        )
    return report.problems
