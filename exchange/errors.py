"""One exception tree for the whole node.

The branches say what the caller does next:

- ``SenderFault``: the input is wrong. Never retry; answer 4xx or a failed receipt.
- ``TransientFault``: something around us is down or slow. Retry with backoff.
- ``PermanentFault``: retrying will not help and it is not the sender's doing.
  Dead-letter the work and alert a person.

Every concrete error has a stable ``code`` (dotted, lowercase) that adapters map to
HTTP responses, SDK error codes and receipts. Codes never change meaning once published;
docs/errors.md lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a package, placed as precisely as we can."""

    line: int | None
    path: str
    message: str
    code: str = "contract.invalid"
    severity: str = "error"  # "error" refuses the package, "warning" only informs

    def render(self, source: str = "") -> str:
        where = f"{source}:" if source else ""
        line = self.line if self.line is not None else "-"
        return f"{where}{line}: {self.path}: {self.message}"


class LienthongError(Exception):
    """Root of every error the node raises on purpose."""

    code = "lienthong.error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self) -> tuple[object, ...]:
        # errors cross process boundaries (the admission pool) with all their fields
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(
    cls: type[LienthongError], args: tuple[object, ...], state: dict[str, object]
) -> LienthongError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class SenderFault(LienthongError):
    """The input is at fault. Do not retry; tell the sender exactly why."""

    code = "sender.fault"


class TransientFault(LienthongError):
    """A dependency is unavailable for now. Retry with backoff."""

    code = "transient.fault"


class PermanentFault(LienthongError):
    """Retrying cannot help and the sender is not to blame: dead-letter and alert."""

    code = "permanent.fault"


# --- the sender's faults: size and XML ------------------------------------------------


class PackageTooLarge(SenderFault):
    code = "package.too_large"


class EmptyPackage(SenderFault):
    code = "package.empty"


class MalformedXml(SenderFault):
    code = "xml.malformed"

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class DoctypeForbidden(SenderFault):
    code = "xml.doctype_forbidden"


class ContractViolation(SenderFault):
    """The package breaks the published contract (structural XSD or rule pass)."""

    code = "contract.invalid"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0] if self.problems else None
        summary = (
            f"{len(self.problems)} problem(s); first at line {first.line}, {first.path}: "
            f"{first.message}"
            if first
            else "invalid"
        )
        super().__init__(summary)


# --- the sender's faults: attachments -------------------------------------------------


class AttachmentInvalid(SenderFault):
    code = "attachment.invalid"


class AttachmentBomb(SenderFault):
    code = "attachment.bomb"


# --- the sender's faults: signatures and certificates ---------------------------------


class SignatureMissing(SenderFault):
    code = "signature.missing"


class SignatureNotXmlDsig(SenderFault):
    code = "signature.not_xmldsig"


class SignatureMultiple(SenderFault):
    code = "signature.multiple"


class SignaturePlacement(SenderFault):
    code = "signature.placement"


class SignatureReference(SenderFault):
    code = "signature.reference"


class SignatureAlgorithm(SenderFault):
    code = "signature.algorithm"


class SignatureInvalid(SenderFault):
    code = "signature.invalid"


class CertificateMissing(SenderFault):
    code = "certificate.missing"


class CertificateUntrusted(SenderFault):
    code = "certificate.untrusted"


class CertificateExpired(SenderFault):
    code = "certificate.expired"


class CertificateNotYetValid(SenderFault):
    code = "certificate.not_yet_valid"


class CertificateRevoked(SenderFault):
    code = "certificate.revoked"


class RevocationUnknown(TransientFault):
    """CRLs are configured, but none is current for an issuer in the chain. Not the
    sender's fault: the package waits (and is dead-lettered if it waits too long) until
    an operator installs a current CRL."""

    code = "certificate.revocation_unknown"


class SignerNotSender(SenderFault):
    """The certificate is valid but is not bound to the agency in From/OrganId."""

    code = "signer.not_sender"


class SubmitterNotSender(SenderFault):
    """The caller submits as one agency, and the package says it is from another."""

    code = "submitter.not_sender"


class UnknownAgency(SenderFault):
    code = "agency.unknown"


# --- routing --------------------------------------------------------------------------


class RecipientUnreachable(SenderFault):
    """A recipient is neither hosted here nor reachable through a link."""

    code = "route.unreachable"


class DocumentIdTaken(SenderFault):
    """A new document reuses a DocumentId that another sender's document carried."""

    code = "document_id.taken"


class StatusUnroutable(SenderFault):
    """A status names a document this node has not carried and cannot pass on."""

    code = "status.unknown_document"


class RequestInvalid(SenderFault):
    """An HTTP request whose query or headers do not say what the API expects (400)."""

    code = "request.invalid"


class Unauthenticated(SenderFault):
    """No credential, or one the node does not know (HTTP 401)."""

    code = "auth.unauthenticated"


class OperatorsOnly(SenderFault):
    """An agency's credential on an operator's endpoint, or the other way round (403)."""

    code = "auth.wrong_kind"


class KeyReused(SenderFault):
    """An idempotency key sent again with other bytes than the first time (HTTP 422)."""

    code = "idempotency.key_reused"


class NotYours(SenderFault):
    """The caller's credential may not act for the agency it names (send as, read for)."""

    code = "agency.not_yours"


class NotInMailbox(SenderFault):
    """The agency's mailbox on this node holds no such package (or it has no mailbox here)."""

    code = "mailbox.not_found"


class NotTracked(SenderFault):
    """A status query names no document or package the asking agency sent through here."""

    code = "status.not_tracked"


class StatusNotAllowed(SenderFault):
    """The agency may not send this status about that document (DESIGN §3)."""

    code = "status.not_allowed"


# --- between nodes --------------------------------------------------------------------


class EnvelopeInvalid(SenderFault):
    """The transport envelope or its hop trail does not check out."""

    code = "envelope.invalid"


class LinkLoginMismatch(SenderFault):
    """With ``[link] verify_login``: a package from a child that was not published under
    that child's own login (with AMQPS and auth=external, its certificate's CN)."""

    code = "link.login_mismatch"


class CheckpointInvalid(SenderFault):
    """A checkpoint of a node's evidence chain (or a parent's file of them) that is
    malformed, not signed, or not signed by the node it names (docs/evidence.md)."""

    code = "checkpoint.invalid"


class EvidenceUnreadable(SenderFault):
    """An evidence bundle that is not one: not JSON, another format, or a part that does
    not parse (docs/evidence.md). A bundle that parses but does not check out is not an
    error: its verdict lists the problems."""

    code = "evidence.unreadable"


class HopLimitExceeded(PermanentFault):
    """The package went round too often: the nodes' directories disagree."""

    code = "envelope.hop_limit"


class DirectoryRefused(PermanentFault):
    """A directory document that is not signed, not signed by the directory's signer, does
    not verify, or does not hold a valid directory."""

    code = "directory.refused"


class DirectoryStale(PermanentFault):
    """A directory document no newer than the one this node keeps."""

    code = "directory.stale"


class AdmissionTimedOut(PermanentFault):
    """Admission of one package ran past its deadline; counted like a crash."""

    code = "intake.admission_timeout"


class AdmissionCrashed(PermanentFault):
    """The admission worker ended while it judged this package (killed, out of memory,
    or crashed in a parser): counted, tried again, and dead-lettered at the limit."""

    code = "intake.admission_crashed"


# --- large packages: transfers between nodes (docs/large-packages.md) --------------------


class TransferCorrupt(SenderFault):
    """The bytes of a transfer do not hash to the SHA-256 its descriptor names (or run past
    its size). The partial is removed; the package is not delivered (HTTP 422)."""

    code = "transfer.corrupt"


class TransferOffsetMismatch(SenderFault):
    """An upload that starts elsewhere than where the receiver's partial ends, or a range
    that starts past the end of the blob (HTTP 409, 416); the answer gives the offset."""

    code = "transfer.offset_mismatch"


class TransferBeyondSize(SenderFault):
    """An upload that would pass its declared size, or a size past the node's cap (HTTP 413)."""

    code = "transfer.beyond_size"


class TransferNotFound(SenderFault):
    """No complete blob of that SHA-256 that this child may read (HTTP 404)."""

    code = "transfer.not_found"


class TransferInterrupted(TransientFault):
    """One attempt of a transfer broke: the connection was refused or cut, or the peer
    answered 5xx. The transfer resumes from where the other side is."""

    code = "transfer.interrupted"


class TransferStalled(TransientFault):
    """No byte moved for ``stall_s`` seconds: the connection is given up and the transfer
    resumes on a new one."""

    code = "transfer.stalled"


class TransferFailed(PermanentFault):
    """A transfer that cannot complete: its deadline passed, or the peer refused it for
    good (credentials, an unknown blob). The reason names the peer and the bytes moved."""

    code = "transfer.failed"


# --- delivery receipts ----------------------------------------------------------------


class ReceiptInvalid(SenderFault):
    """A delivery receipt that cannot be relied on: not well-formed, not following
    schemas/receipt.xsd, from a node without a pinned certificate, or whose signature does
    not verify with that certificate. The message says which."""

    code = "receipt.invalid"


class ReceiptPackageMismatch(SenderFault):
    """A receipt that verifies, but covers other bytes than the package it is held against."""

    code = "receipt.package_mismatch"


# --- the national-axis SDK facade (docs/sdk-facade.md) -------------------------------


class SdkSystemUnknown(SenderFault):
    """No ``XroadVnpt-systemid``, or one that no client of this node is configured with."""

    code = "sdk.system_unknown"


class SdkSignatureInvalid(SenderFault):
    """The XroadVnpt- signature is missing, does not verify with the system's secret, or
    does not cover the system that calls."""

    code = "sdk.signature_invalid"


class SdkHeaderMismatch(SenderFault):
    """A header (or a field of the JSON body) says otherwise than the signed sign-header,
    or a header the signature names is not sent."""

    code = "sdk.header_mismatch"


class SdkTimestampInvalid(SenderFault):
    """The signed timestamp does not read as the SDK's ``ddMMyyyy'T'HHmmss+SSSS``."""

    code = "sdk.timestamp_invalid"


class SdkFileHashMismatch(SenderFault):
    """The file sent is not the file whose SHA-256 the signed ``hash-file`` gives."""

    code = "sdk.file_hash_mismatch"


class SdkRequestInvalid(SenderFault):
    """An SDK call that is not well-formed: a malformed multipart body, no ``file_doc``
    part, a signed field missing or out of its vocabulary, a body that is not JSON."""

    code = "sdk.request_invalid"


class RateLimited(TransientFault):
    """The calling system sends more requests a second than its ``rate_per_s`` allows."""

    code = "http.rate_limited"


class IntakeRateLimited(TransientFault):
    """An AMQP login submits more packages a second than its ``rate_per_s`` allows: the
    node answers at once, without admitting them, so one agency's flood does not hold up
    the others'."""

    code = "intake.rate_limited"


class RequestTimeout(SenderFault):
    """An HTTP request's body did not arrive within ``http.body_timeout_s`` (a body that
    never finishes, or dribbles): refused, and the connection closed."""

    code = "http.request_timeout"


# --- upstream axes (docs/bridge.md) -----------------------------------------------------


class UpstreamUnavailable(TransientFault):
    """An upstream axis did not answer: refused the connection, passed the call's deadline,
    or answered an HTTP 5xx. The bridge tries again with backoff."""

    code = "upstream.unavailable"


class UpstreamGarbled(TransientFault):
    """An upstream axis answered something that is not its protocol's shape (not JSON, a
    field missing, an id that is not a string). Logged with the first bytes; tried again."""

    code = "upstream.garbled"


class UpstreamUnauthorised(PermanentFault):
    """An upstream axis refused our credentials (HTTP 401/403, or its own auth error):
    retrying will not help until an operator fixes the secret."""

    code = "upstream.unauthorised"


class UpstreamRefused(SenderFault):
    """An upstream axis refused a package or a call with a definite answer (``FAIL`` with
    its error code and description), carried in the message."""

    code = "upstream.refused"


class Quarantined(SenderFault):
    """No such quarantined package, or it was decided before."""

    code = "quarantine.not_held"


class NotDeadLettered(SenderFault):
    """No such dead letter, or it was replayed or purged before."""

    code = "ops.not_dead_lettered"


class ViewerOnly(SenderFault):
    """An operator credential with the viewer role asked for an action (HTTP 403)."""

    code = "ops.viewer_only"


class Draining(TransientFault):
    """The node is in maintenance (drain) mode: it takes no new packages until an operator
    ends the drain; what it holds is still carried (HTTP 503)."""

    code = "node.draining"


class StoreFull(TransientFault):
    """The store's disk is full (ENOSPC, SQLite's "database or disk is full", PostgreSQL's
    53100): nothing was committed, nor acknowledged. Not the sender's fault and not counted
    against the package: it waits (AMQP) or is answered 503 with Retry-After (HTTP) until an
    operator frees space; the store's health says so meanwhile."""

    code = "store.disk_full"

    retry_after_s = 30  # space is freed by a person, not in a second


class AlertNotSent(TransientFault):
    """A webhook or SMTP server did not take an alert notification (refused, passed its
    deadline, answered an error); it stays pending and goes at the next check."""

    code = "alerts.not_sent"


# --- configuration: a person must fix it ----------------------------------------------


class ConfigurationError(PermanentFault):
    code = "config.invalid"
