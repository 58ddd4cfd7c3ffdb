"""The benchmark harness runs (a smoke run with few iterations; figures come from
``python -m bench`` on demand, never from assertions here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

NUMBER = re.compile(r"^-?\d+(\.\d+)? \(-?\d+(\.\d+)?–-?\d+(\.\d+)?\)$")


OUT = Path(tempfile.mkdtemp(prefix="bench-smoke-")) / "benchmarks.md"


def _bench(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args, *([] if "--out" in args else ["--out", str(OUT)])],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _cells(stdout: str, first: str) -> list[str]:
    """The cells of the table row that starts with ``first``."""
    row = next(line for line in stdout.splitlines() if line.startswith(f"| {first} "))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_the_admission_scenario_runs_and_reports_a_ratio() -> None:
    stdout = _bench("admission", "--quick")
    rows = [line for line in stdout.splitlines() if line.startswith(("| 10 KiB", "| 1 MiB"))]
    assert len(rows) == 2
    for row in rows:
        ratio = row.rstrip(" |").rsplit("|", 1)[-1].split()[0]
        assert float(ratio) > 0
    for configuration in ("lienthong pool, 1 worker", "lienthong pool, 2 workers"):
        rate, cpu = _cells(stdout, configuration)[1:]
        assert NUMBER.match(rate), rate
        assert NUMBER.match(cpu), cpu
    page = OUT.read_text()  # the page, with the headlines and their targets in its summary
    summary = _cells(page, "[admission](#admission)")
    assert summary[1] == "admission alone, one core, signed 10 KiB, µs per package"
    assert summary[5] == "≤ 1.25×"
    assert summary[7] == "`python -m bench admission --quick`"
    assert "packages/s: 2 workers (baseline: 1 worker) | " in page


def test_the_pdf_signature_scenario_checks_a_valid_signature_and_reports_a_ratio() -> None:
    stdout = _bench("pades", "--quick")
    cells = _cells(stdout, "legacy, one signed PDF")
    assert all(NUMBER.match(cell) for cell in cells[1:])


@pytest.mark.integration
@pytest.mark.ondemand  # 7-14 s each: the CI suite keeps under 15 minutes
def test_the_route_scenario_runs_both_systems_and_reports_latency() -> None:
    stdout = _bench("route", "--quick")
    for system in ("lienthong", "raw aio-pika forwarders"):
        capacity, *_ = _cells(stdout, system)[1:]
        assert NUMBER.match(capacity), capacity
    _, _, added_p50, _ = _cells(stdout, "**lienthong − raw aio-pika forwarders, per repeat**")
    assert NUMBER.match(added_p50.strip("*"))
    assert "Target, lienthong adds under 30 ms p50:" in stdout
    assert "| commune → district |" in stdout  # the legs, read from the hop records


@pytest.mark.integration
def test_the_fanout_scenario_reaches_every_mailbox_of_a_small_tree() -> None:
    stdout = _bench("fanout", "--quick")
    assert "Trees: 7 nodes (1 central, 2 provinces, 4 districts) in 2 processes" in stdout
    mailboxes = _cells(stdout, "mailbox rows written (the run with fewest)")[1:]
    assert mailboxes == [
        "11 of 11 (central 2/2, provinces 3/3, districts 6/6)",
        "11 of 11 (central 2/2, provinces 3/3, districts 6/6)",
    ]  # lienthong, then the raw tree: the first table, to every other agency
    copies = _cells(stdout, "link copies: outbox rows / arrived / most on one link")[1:]
    assert copies == ["6 / 6 / 1", "6 / 6 / 1"]  # one copy per link, every one arrived
    assert "Goal, lienthong: every one of 21 mailboxes within 60 s:" in stdout
    headline = _cells(OUT.read_text(), "[fanout](#fanout)")
    assert headline[1] == "one package to 21 agencies, s to the last mailbox (baseline: raw tree)"
    assert NUMBER.match(headline[2]), headline
    assert NUMBER.match(headline[3]), headline


@pytest.mark.integration
def test_the_ops_scenario_reads_status_while_the_node_takes_packages() -> None:
    stdout = _bench("ops", "--quick")
    for row in ("quiet (baseline)", "watched / quiet, round by round"):
        assert NUMBER.match(_cells(stdout, row)[1]), stdout
    p50, p99, reads = _cells(stdout, "/status, under load")[1:]
    assert 0 < float(p50) <= float(p99)
    assert int(reads) > 0


@pytest.mark.ondemand  # the longest smoke runs (25-45 s each): with the benchmarks
@pytest.mark.integration
def test_the_large_scenario_carries_packages_and_reads_every_peak() -> None:
    stdout = _bench("large", "--quick", timeout=300)
    for size in ("1 MiB", "4 MiB"):
        cells = _cells(stdout, size)
        assert float(cells[2]) > 0  # lienthong MB/s
        assert float(cells[4]) > 0  # curl MB/s
    peaks = stdout.split("over the whole run, MiB: ")[1].split(", ")
    assert len(peaks) == 5  # four sandbox processes and the national axis's
    headline = _cells(OUT.read_text(), "[large](#large)")
    assert headline[1] == "4 MiB over the 4-hop route, s (baseline: curl, four copies in a row)"
    assert all(NUMBER.match(cell) for cell in headline[2:5]), headline


@pytest.mark.ondemand  # the longest smoke runs (25-45 s each): with the benchmarks
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_sizes_scenario_measures_every_size_and_system_on_both_chains(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    stdout = _bench("sizes", "--quick", "--out", str(page), timeout=300)
    chains = stdout.split("\n### ")[1:]
    assert [chain.split(":")[0] for chain in chains] == ["One hop", "4-hop route"]
    for chain in chains:
        for size in ("1 KiB", "100 KiB"):
            for system in ("lienthong", "naive verifying forwarder", "raw aio-pika forwarders"):
                capacity, mbps, ratio, p50, p99 = _cells(chain, f"{size} | {system}")[2:]
                assert all(NUMBER.match(cell) for cell in (capacity, mbps, p50, p99)), chain
                assert NUMBER.match(ratio) if system != "lienthong" else ratio == ""
            cpu = chain.split("CPU per package")[1]
            assert all(NUMBER.match(cell) for cell in _cells(cpu, size)[1:])
        assert "| commune → district |" in chain  # the legs, read from the hop records
    summary = page.read_text(encoding="utf-8")
    target = "intake + one hop, signed 1 KiB: capacity vs naive verifying forwarder, packages/s"
    ours, base, ratio, wanted, met = _cells(summary, f"[sizes](#sizes) | {target}")[2:7]
    assert all(NUMBER.match(cell) for cell in (ours, base, ratio))
    assert (wanted, met in ("met", "**not met**")) == ("≥ 0.7×", True)
    for plot in ("sizes-throughput.png", "sizes-latency.png"):
        assert (tmp_path / "bench" / plot).read_bytes().startswith(b"\x89PNG")


@pytest.mark.integration
@pytest.mark.ondemand  # 7-14 s each: the CI suite keeps under 15 minutes
def test_the_scaleout_scenario_serves_one_node_once_and_twice_and_finds_no_duplicate() -> None:
    stdout = _bench("scaleout", "--quick")
    for row in ("1 instance (baseline)", "2 instances"):
        capacity, cpu = _cells(stdout, row)[1:]
        assert NUMBER.match(capacity), capacity
        assert NUMBER.match(cpu), cpu
    ratio = re.search(r"2 instances / 1, per repeat: (.+)\.\n", stdout)
    assert ratio is not None
    assert NUMBER.match(ratio.group(1)), ratio.group(1)
    for check in (
        "packages not in the mailbox exactly once",
        "mailbox copies whose delivery was recorded twice",
        "link copies published twice",
    ):
        assert _cells(stdout, check)[1:] == ["0"]


@pytest.mark.ondemand  # the longest smoke runs (25-45 s each): with the benchmarks
@pytest.mark.integration
def test_the_sustained_scenario_reports_both_systems_minute_by_minute(tmp_path: Path) -> None:
    stdout = _bench("sustained", "--quick", "--out", str(tmp_path / "benchmarks.md"))
    windows = [line for line in stdout.splitlines() if re.match(r"^\| \d+–\d+ \| ", line)]
    assert len(windows) >= 4  # every window, of both systems
    for first in ("1 | lienthong", "1 | naive forwarder", "0–3 | lienthong"):
        answered, p50, p99, rows, rss, processes, store, cpu = _cells(stdout, first)[2:]
        assert float(answered) > 0
        assert 0 < float(p50) <= float(p99)
        assert float(rss) > 0
        assert float(store) > 0
        for part in processes.split(" + "):  # "node 95.6 (0.62)": MiB (cores)
            assert re.fullmatch(r"[a-z ]+\d* \d+\.\d \(\d+\.\d\d\)", part), part
        assert len([float(cores) for cores in cpu.split(" / ")]) == 4
        if "lienthong" in first:
            assert all(float(v) > 0 for v in rows.split(" / "))  # to the mailbox row
            assert "admission worker" in processes
    kept = json.loads((tmp_path / "bench" / "results" / "sustained.json").read_text())
    assert [h["target"] for h in kept["headlines"]] == ["≤ 1.10×", "≤ 2×"]
    assert all(isinstance(h["met"], bool) for h in kept["headlines"])
    for plot in kept["plots"]:
        assert (tmp_path / plot).stat().st_size > 0


def test_an_unknown_scenario_is_named() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown scenario(s): nonsense" in result.stderr


@pytest.mark.ondemand  # 7-14 s each: the CI suite keeps under 15 minutes
def test_the_hostile_scenario_attacks_every_door_and_loses_nothing() -> None:
    stdout = _bench("hostile", "--quick")
    for row in ("baseline", "under attack"):
        p50, p99 = _cells(stdout, row)[1:3]
        assert NUMBER.match(p50), p50
        assert NUMBER.match(p99), p99
        assert _cells(stdout, row)[-1] == "0 (0–0)"  # lost
    for kind in ("slowloris (headers dribbled)", "corpus at REST", "AMQP flood from one login"):
        tried, let_in = _cells(stdout, kind)[1:]
        assert int(tried) > 0
        assert let_in == "0"
