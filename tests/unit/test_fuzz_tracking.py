"""Fuzzing the tracking fold (exchange/tracking.py): a recipient's state never goes back.

Evidence arrives in any order and may be reported more than once (receipts travel back hop
by hop, reports are relayed again after a crash). Whatever the order and the repeats:

- each event added moves a recipient's transport state and business status forward or
  leaves them, never back (the ranks are the fold's own precedence, below);
- the same events, in any order and with any repeats, read as the same state.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from exchange.evidence import Event, EventKind
from exchange.tracking import PROGRESS, RECALL_ANSWERS, RecipientState, recipient_state
from tests.fuzzing import fuzz, tried

T0 = datetime(2027, 2, 2, 3, 0, tzinfo=UTC)
ACCEPTED_AT = T0 - timedelta(hours=1)
RECIPIENTS = ("000.00.00.H41", "000.00.00.G14")
SENDER = "000.21.31.H53"
NODES = ("commune", "district", "province")

# The fold's precedence, from recipient_state: fetched wins over failed, failed over
# delivered, delivered over bridged, bridged over forwarded, forwarded over accepted.
TRANSPORT_RANK = {
    "accepted": 0,
    "forwarded": 1,
    "bridged": 2,
    "delivered": 3,
    "failed": 4,
    "fetched": 5,
}
# A recall is asked (13), then answered (15 agreed, 16 refused).
RECALL_RANK = {None: 0, "13": 1, **dict.fromkeys(RECALL_ANSWERS, 2)}
STATUS_CODES = ("01", "02", "03", "04", "05", "06", "13", "15", "16", "", "99", "1", "07")

# Few distinct instants, so that ties (two answers stamped the same second) are common.
TIMES = st.integers(min_value=0, max_value=3).map(lambda m: T0 + timedelta(minutes=m))
SOME_RECIPIENTS = st.lists(st.sampled_from(RECIPIENTS), max_size=2, unique=True)


@st.composite
def events(draw: st.DrawFn) -> Event:
    """One piece of evidence about the package or its document."""
    kind = draw(
        st.sampled_from(
            (
                EventKind.DELIVERED,
                EventKind.BRIDGED,
                EventKind.FETCHED,
                EventKind.FAILED,
                EventKind.REVOKED,
                EventKind.STATUS,
                EventKind.STATUS,
                EventKind.STATUS,
                EventKind.RECEIVED,
            )
        )
    )
    at = draw(TIMES)
    node = draw(st.sampled_from(NODES))
    party = draw(st.sampled_from((*RECIPIENTS, SENDER)))
    detail: dict[str, object] = {}
    if kind in (EventKind.DELIVERED, EventKind.BRIDGED):
        detail["recipients"] = draw(SOME_RECIPIENTS)
        if kind is EventKind.DELIVERED:
            detail["receipt"] = draw(st.sampled_from(("", "<DeliveryReceipt/>")))
        else:
            detail.update(upstream="vdxp", doc_id=draw(st.sampled_from(("d1", "d2"))))
    elif kind in (EventKind.FAILED, EventKind.REVOKED):
        detail["reason"] = draw(st.sampled_from((None, "", "mailbox full", "revoked")))
        if kind is EventKind.REVOKED:
            detail["outcome"] = draw(st.sampled_from(("", "withdrawn", "already read")))
    elif kind is EventKind.STATUS:
        detail["code"] = draw(st.sampled_from(STATUS_CODES))
        if not draw(st.integers(min_value=0, max_value=3)):  # its own edXML Timestamp
            detail["sent_at"] = draw(TIMES).isoformat()
    key = f"{kind}|{party}|{at.isoformat()}|{node}|{sorted(detail.items(), key=str)}"
    return Event(kind, key, at, node, document_id="doc", party=party, detail=detail)


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """Distinct facts, then the order they are seen in, some seen more than once."""
    facts = draw(st.lists(events(), min_size=1, max_size=12, unique_by=lambda e: e.key))
    order = draw(
        st.lists(st.integers(min_value=0, max_value=len(facts) - 1), max_size=len(facts) * 2)
    )
    seen = [facts[i] for i in order]
    return seen + [f for f in facts if f not in seen]  # every fact is seen at least once


def state(recipient: str, seen: list[Event], forwarded_at: datetime | None) -> RecipientState:
    transport = [e for e in seen if e.kind is not EventKind.STATUS]
    status = [e for e in seen if e.kind is EventKind.STATUS]
    return recipient_state(
        recipient, ACCEPTED_AT, forwarded_at, transport, status, now=T0 + timedelta(days=3)
    )


def ranks(row: RecipientState) -> tuple[int, int, int, int]:
    return (
        TRANSPORT_RANK[row.transport],
        int(row.receipt),
        PROGRESS.get(row.status or "", 0),
        RECALL_RANK[row.recall],
    )


def view(row: RecipientState) -> tuple[object, ...]:
    """What a sender reads of a recipient, bar the first-seen time and node of a state."""
    return (row.transport, row.receipt, row.status, row.status_at, row.recall)


FORWARDED = st.one_of(st.none(), st.just(T0 - timedelta(minutes=30)))


@fuzz(300)
@given(seen=histories(), recipient=st.sampled_from(RECIPIENTS), forwarded_at=FORWARDED)
def test_fuzz_a_recipients_state_never_goes_back_as_evidence_arrives(
    seen: list[Event], recipient: str, forwarded_at: datetime | None
) -> None:
    tried("tracking: state never goes back")
    before = state(recipient, [], forwarded_at)
    for count in range(1, len(seen) + 1):
        after = state(recipient, seen[:count], forwarded_at)
        names = ("transport", "receipt", "business status", "recall")
        for what, old, new in zip(names, ranks(before), ranks(after), strict=True):
            assert new >= old, f"{what} went back: {before} -> {after} on {seen[count - 1]}"
        if before.status is not None and PROGRESS.get(after.status or "") == PROGRESS.get(
            before.status
        ):
            assert after.status_at is not None
            assert before.status_at is not None
            assert after.status_at >= before.status_at, "the status moved to an earlier answer"
        before = after


@fuzz(250)
@given(seen=histories(), recipient=st.sampled_from(RECIPIENTS), data=st.data())
def test_fuzz_the_same_evidence_in_any_order_reads_the_same(
    seen: list[Event], recipient: str, data: st.DataObject
) -> None:
    tried("tracking: any order reads the same")
    shuffled = data.draw(st.permutations(seen))
    repeated = shuffled + data.draw(st.lists(st.sampled_from(seen), max_size=4))
    expected = view(state(recipient, seen, None))
    assert view(state(recipient, seen[::-1], None)) == expected
    assert view(state(recipient, shuffled, None)) == expected
    assert view(state(recipient, repeated, None)) == expected


@st.composite
def answers(draw: st.DrawFn) -> Event:
    """A business status about the document, from its recipient (or 13 from its sender)."""
    code = draw(st.sampled_from(("01", "02", "03", "04", "05", "06", "13", "15", "16", "99")))
    party = SENDER if code == "13" else RECIPIENTS[0]
    at = T0 + timedelta(minutes=draw(st.integers(min_value=0, max_value=2)))
    return Event(EventKind.STATUS, f"{code}|{at}", at, "n", party=party, detail={"code": code})


@fuzz(300)
@given(
    facts=st.lists(answers(), min_size=1, max_size=8, unique_by=lambda e: e.key),
    data=st.data(),
)
def test_fuzz_business_answers_in_any_order_read_the_same(
    facts: list[Event], data: st.DataObject
) -> None:
    tried("tracking: business answers in any order")
    expected = view(state(RECIPIENTS[0], facts, None))
    assert view(state(RECIPIENTS[0], facts[::-1], None)) == expected
    assert view(state(RECIPIENTS[0], data.draw(st.permutations(facts)), None)) == expected
