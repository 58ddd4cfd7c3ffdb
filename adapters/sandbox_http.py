"""The sandbox demo over the REST API (docs/http-api.md): one more document, sent by the
commune's system to its node, taken by the recipient's system from its own node, and
acknowledged; the sender's system then sees it fetched. Tokens are in .sandbox/http.json."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

TIMEOUT_S = 60.0


async def over_http(
    folder: Path, *, entry: str, exit_: str, sender: str, recipient: str, data: bytes
) -> bool:
    faces: dict[str, Any] = json.loads((folder / "http.json").read_text(encoding="utf-8"))
    at_sender, at_recipient = faces[entry], faces[exit_]
    mine = {"Authorization": f"Bearer {at_sender['tokens'][sender]}"}
    theirs = {"Authorization": f"Bearer {at_recipient['tokens'][recipient]}"}
    print(f"\nover the REST API ({folder / 'http.json'} has the URLs and tokens):")
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(f"{at_sender['url']}/v1/packages", data=data, headers=mine) as sent:
            answer = await sent.json()
        if sent.status != 201:
            print(f"  POST /v1/packages: {sent.status} {answer}")
            return False
        message_id = answer["message_id"]
        print(f"  {sender}'s system: POST {at_sender['url']}/v1/packages: 201 {answer['outcome']}")
        mailbox = f"{at_recipient['url']}/v1/agencies/{recipient}/mailbox"
        deadline = time.monotonic() + TIMEOUT_S
        while True:  # long polling: each request waits for mail up to 20 s
            async with http.get(mailbox, params={"wait": "20"}, headers=theirs) as page:
                items = (await page.json())["items"]
            if any(i["message_id"] == message_id for i in items):
                break
            if time.monotonic() > deadline:
                print(f"  not in {recipient}'s mailbox after {TIMEOUT_S:.0f} s")
                return False
        one = f"{at_recipient['url']}/v1/agencies/{recipient}/packages/{message_id}"
        async with http.get(one, headers=theirs) as got:
            same = await got.read() == data
        async with http.post(f"{one}/ack", headers=theirs) as ack:
            acked = ack.status == 200
        print(
            f"  {recipient}'s system: GET …/mailbox?wait=20, GET …/packages/{message_id}: "
            f"{'the exact bytes' if same else 'DIFFERENT BYTES'}; POST …/ack: "
            f"{'acknowledged' if acked else ack.status}"
        )
        view = f"{at_sender['url']}/v1/agencies/{sender}/sent/{message_id}"
        while True:
            async with http.get(view, headers=mine) as state:
                rows = {r["recipient"]: r for r in (await state.json())["recipients"]}
            if rows[recipient]["transport"] == "fetched":
                break
            if time.monotonic() > deadline:
                print(f"  the sender still sees {rows[recipient]['transport']}")
                return False
            await asyncio.sleep(0.2)
        where = rows[recipient]["node"]
        print(f"  {sender}'s system: GET …/sent/{message_id}: fetched at node {where}")
    return same and acked
