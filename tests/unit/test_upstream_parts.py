"""The pure parts of the bridge: the TraceHeader splice toward an upstream, the poll
schedule, and [upstreams] in a node file."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import pytest

from exchange.config_upstream import upstream_settings
from exchange.errors import ConfigurationError
from exchange.trace import append_trace_header
from exchange.upstream import PollSchedule
from exchange.validation import validate
from tests.conftest import REAL_SAMPLES, example

AT = datetime(2026, 11, 28, 9, 5, 7)
HOP = b"<edXML:TraceHeader><edXML:OrganId>000.00.00.H53</edXML:OrganId><edXML:Timestamp>2026/11/28 09:05:07</edXML:Timestamp></edXML:TraceHeader>"  # noqa: E501


def test_a_trace_header_goes_after_the_last_one_and_nothing_else_changes() -> None:
    data = example("document-new.edxml")
    out = append_trace_header(data, "000.00.00.H53", AT)
    assert len(out) == len(data) + len(HOP)
    at = out.index(HOP)
    assert out[:at] + out[at + len(HOP) :] == data  # a splice: every other byte as it was
    assert out[:at].rstrip().endswith(b"</edXML:TraceHeader>")
    assert validate(out).ok


@pytest.mark.skipif(not REAL_SAMPLES.is_dir(), reason="no real samples")
def test_the_splice_keeps_a_real_vxp_package_valid() -> None:
    path = REAL_SAMPLES / "gateway-traffic" / "874e0f18-90dc-45fb-989a-65401470ba84.edxml"
    data = path.read_bytes()
    out = append_trace_header(data, "000.00.00.H53", AT)
    assert out.count(b"<edXML:TraceHeader>") == data.count(b"<edXML:TraceHeader>") + 1
    assert validate(out).ok == validate(data).ok


def test_an_empty_trace_header_list_is_opened_with_the_producers_prefix() -> None:
    data = b"<e:Env xmlns:e='urn:x'><e:TraceHeaderList/></e:Env>"
    out = append_trace_header(data, "X", AT)
    assert out.startswith(b"<e:Env xmlns:e='urn:x'><e:TraceHeaderList><e:TraceHeader>")
    assert out.endswith(b"</e:TraceHeader></e:TraceHeaderList></e:Env>")


def test_polls_back_off_with_jitter_and_come_straight_back_while_there_is_work() -> None:
    schedule = PollSchedule(every_s=60, ceiling_s=600, rng=random.Random(7))
    waits = [schedule.after_failure() for _ in range(6)]
    assert 96 <= waits[0] <= 144  # 120 s, ±20 %
    assert all(480 <= w <= 720 for w in waits[3:])  # the ceiling, jittered
    assert len({round(w, 3) for w in waits}) == len(waits)  # never two the same
    assert schedule.after_success(found=3) == 0.0
    assert 48 <= schedule.after_success(found=0) <= 72


def test_upstreams_are_read_with_their_secrets_and_refused_with_a_clear_reason(
    tmp_path: Path,
) -> None:
    (tmp_path / "secret").write_text("0123456789abcdef0123\n")
    table = {
        "vdxp": {
            "protocol": "vdxp",
            "endpoint": "https://vdxp.example/vdxp/",
            "policy": "legacy",
            "credentials": [{"name": "tn", "systemid": "000.00.00.H53", "secret_file": "secret"}],
        }
    }
    (read,) = upstream_settings(table, "node.toml", tmp_path, 1024)
    assert (read.endpoint, read.policy, read.source) == (
        "https://vdxp.example/vdxp",
        "legacy",
        "upstream:vdxp",
    )
    assert read.credentials[0].secret == b"0123456789abcdef0123"
    bad = {"vdxp": {**table["vdxp"], "policy": "lenient"}}
    with pytest.raises(ConfigurationError, match=r"upstreams\.vdxp\.policy"):
        upstream_settings(bad, "node.toml", tmp_path, 1024)
    missing = {"vdxp": {**table["vdxp"], "credentials": [{"systemid": "x", "secret_file": "no"}]}}
    with pytest.raises(ConfigurationError, match="cannot read"):
        upstream_settings(missing, "node.toml", tmp_path, 1024)
    langson = {"p": {**table["vdxp"], "protocol": "langson"}}
    with pytest.raises(ConfigurationError, match="username"):
        upstream_settings(langson, "node.toml", tmp_path, 1024)
