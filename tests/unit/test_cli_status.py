"""What `lienthong status` prints: one row per recipient, from the node's answer."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.cli_status import status_lines
from exchange.evidence import Event, EventKind
from tests.pki import DevPki
from tests.unit.memory_tree import COMMUNE, G14, H41, Tree, document
from tests.unit.test_tracking import wait_for


async def test_the_table_says_where_each_recipient_stands_and_why(tree: Tree, pki: DevPki) -> None:
    origin = tree.nodes["commune-21-31-h53"]
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G14, H41))
    await wait_for(origin, str(sent.message_id), {G14: "delivered", H41: "delivered"})
    await origin.store.record_events(  # as if H41's node had given it up
        [
            Event(
                EventKind.FAILED,
                "f",
                datetime.now(UTC),
                "province-h41",
                message_id=str(sent.message_id),
                party=H41,
                detail={"reason": "expired: waited for link x since then"},
            )
        ]
    )
    view = await wait_for(origin, str(sent.message_id), {G14: "delivered"})
    lines = status_lines(view.to_json())
    assert lines[0].startswith(f"edoc {sent.message_id} from {COMMUNE} (strict)")
    assert "(end to end)" in lines[1]
    rows = {line.split()[0]: line for line in lines[4:] if line.startswith("  0")}
    assert rows[G14].split()[1:2] == ["delivered"]
    assert "central" in rows[G14]
    assert rows[H41].split()[1:2] == ["failed"]
    assert "  reason: expired: waited for link x since then" in "\n".join(lines)
