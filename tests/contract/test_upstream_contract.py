"""One contract for an upstream client (exchange/upstream.py), run against the memory fake
the bridge's unit tests use and against the real provincial clients talking HTTP to fakes
built from the documented shapes (tests/fake_lgsp.py). What the bridge relies on: what is
put is listed for its kind, fetched byte for byte, and gone from the list once confirmed
done; a send answers a transport id; the agency list is read. (The national axis client
is held to the same by tests/unit/test_upstream_vdxp.py, against our own SDK facade.)"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from adapters.upstream_bkav import BkavClient
from adapters.upstream_langson import LangsonClient
from exchange.upstream import UpstreamAgency, UpstreamClient
from tests.fake_lgsp import FakeBkav, FakeLangson
from tests.fake_upstream import FakeUpstream
from tests.unit.test_upstream_lgsp import (
    BKAV_TOKEN,
    LS,
    LS_SECRET,
    OURS,
    Clock,
    bkav_credential,
    langson_credential,
    settings,
)

DOCUMENT = "<edXML:edXMLEnvelope>văn bản</edXML:edXMLEnvelope>".encode()
STATUS = b"<edXML:edXMLEnvelope><edXML:StatusCode>03</edXML:StatusCode></edXML:edXMLEnvelope>"
AGENCY = "000.00.00.G09"


@dataclass
class Backend:
    client: UpstreamClient
    put: Callable[[str, bytes], str]  # (kind, bytes) -> the docId the client will list


@pytest.fixture(params=["memory", "bkav", "langson"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    numbers = itertools.count(41)
    if request.param == "memory":
        fake = FakeUpstream(agencies_listed=[UpstreamAgency(AGENCY, "Bộ Nội vụ")])
        yield Backend(fake, lambda kind, data: fake.put(kind, data, OURS))
        return
    if request.param == "bkav":
        async with FakeBkav(token=BKAV_TOKEN) as bkav:
            bkav.agencies = [{"organId": AGENCY, "organName": "Bộ Nội vụ"}]
            client = BkavClient(settings(bkav.url, "bkav", bkav_credential()), bkav_credential())

            def put_bkav(kind: str, data: bytes) -> str:
                number = str(next(numbers))
                bkav.put_pending(kind, number, data, recipient=OURS)
                return number if kind == "edoc" else f"status:{number}"

            yield Backend(client, put_bkav)
            await client.close()
        return
    async with FakeLangson(
        username=LS["username"],
        password=LS["password"],
        application_code=LS["application_code"],
        systemid=OURS,
        secret=LS_SECRET,
    ) as langson:
        langson.agencies = [{"code": AGENCY, "name": "Bộ Nội vụ"}]
        credential = langson_credential()
        client = LangsonClient(
            settings(langson.url, "langson", credential),
            credential,
            clock=Clock(datetime(2026, 3, 10, 1, 0, tzinfo=UTC)),
        )

        def put_langson(kind: str, data: bytes) -> str:
            doc_id = f"ls-{next(numbers)}"
            langson.put_pending(kind, doc_id, data, recipient=OURS)
            return doc_id

        yield Backend(client, put_langson)
        await client.close()


async def test_what_is_put_is_listed_for_its_kind_and_fetched_byte_for_byte(
    backend: Backend,
) -> None:
    document = backend.put("edoc", DOCUMENT)
    status = backend.put("status", STATUS)
    assert [item.doc_id for item in await backend.client.pending("edoc")] == [document]
    assert [item.doc_id for item in await backend.client.pending("status")] == [status]
    assert [item.kind for item in await backend.client.pending("status")] == ["status"]
    assert await backend.client.fetch(document) == DOCUMENT
    assert await backend.client.fetch(status) == STATUS


async def test_confirmed_done_it_is_no_longer_listed(backend: Backend) -> None:
    first = backend.put("edoc", DOCUMENT)
    second = backend.put("edoc", DOCUMENT + b" ")
    await backend.client.confirm(first, ok=True)
    assert [item.doc_id for item in await backend.client.pending("edoc")] == [second]


async def test_a_send_answers_a_transport_id(backend: Backend) -> None:
    doc_id = await backend.client.send(DOCUMENT, kind="edoc", sender=OURS, recipients=[AGENCY])
    assert isinstance(doc_id, str)
    assert doc_id


async def test_the_agency_list_is_read(backend: Backend) -> None:
    assert [a.organ_id for a in await backend.client.agencies()] == [AGENCY]
