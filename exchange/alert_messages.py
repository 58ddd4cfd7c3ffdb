"""What a person receives when an alert starts or ends: the webhook's JSON and the e-mail's
subject and body, in Vietnamese then English, with what to do (docs/alerts.md says more).
Text only; adapters/notify.py sends it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from exchange.alerting import Alert

FIRING: Literal["firing"] = "firing"
RESOLVED: Literal["resolved"] = "resolved"

# name: (what to do, in Vietnamese; in English)
RUNBOOK: Mapping[str, tuple[str, str]] = {
    "LienthongLinkDown": (
        "Xem lỗi gần nhất của liên kết: `lienthong ops links` hoặc bảng điều khiển /ops/; "
        "kiểm tra đường mạng, tài khoản (link.parent_url) và máy chủ RabbitMQ của nút bên kia.",
        "Read the link's last error with `lienthong ops links` or the console at /ops/; check "
        "the network path, the credentials (link.parent_url) and the neighbour's broker.",
    ),
    "LienthongBacklogGrowing": (
        "Xem trạng thái và hàng đợi của liên kết (`lienthong ops links`, /ops/); nếu liên kết "
        "vẫn hoạt động, kiểm tra bên nhận và độ sâu hàng đợi (GET /status).",
        "Look at the link's state and backlog (`lienthong ops links`, /ops/); if it is up, "
        "check the receiving side and the queue depths (GET /status).",
    ),
    "LienthongDeadLetters": (
        "Xem lý do từng gói (`lienthong ops dlq list`, /ops/), khắc phục rồi gửi lại "
        "(`lienthong ops dlq replay`) hoặc huỷ (bên gửi nhận biên nhận thất bại).",
        "Read each reason (`lienthong ops dlq list`, /ops/), fix the cause, then replay "
        "(`lienthong ops dlq replay`) or purge (the sender gets a failed receipt).",
    ),
    "LienthongOverdueAcknowledgements": (
        "Xem danh sách văn bản quá hạn (GET /v1/ops/overdue, /ops/) và liên hệ bộ phận văn "
        "thư của cơ quan nhận: phần mềm của họ không lấy văn bản về.",
        "List the overdue copies (GET /v1/ops/overdue, /ops/) and call the recipient "
        "agency's document desk: its software is not fetching.",
    ),
    "LienthongCertificateExpiring": (
        "Xin cấp chứng thư số mới và triển khai trước ngày hết hạn (/ops/ liệt kê các "
        "chứng thư và số ngày còn lại).",
        "Have a new certificate issued and roll it out before the date (/ops/ lists every "
        "certificate with its days left).",
    ),
    "LienthongCertificateExpiringSoon": (
        "Gia hạn ngay: cài chứng thư mới (khoá của nút, hoặc danh bạ mới cho cơ quan) rồi "
        "khởi động lại nút.",
        "Renew now: install the new certificate (the node's key, or a new signed directory "
        "for an agency) and restart the node.",
    ),
    "LienthongClockSkew": (
        "Kiểm tra đồng bộ thời gian của máy chủ (timedatectl, chrony hoặc ntpd).",
        "Check the host's time synchronisation (timedatectl, chrony or ntpd).",
    ),
    "LienthongDirectoryStale": (
        "Nút gốc ký và phát hành danh bạ mới (`lienthong directory sign`); nút này kiểm tra "
        "việc đồng bộ danh bạ từ nút cha.",
        "The root signs and publishes a newer directory (`lienthong directory sign`); this "
        "node checks directory sync from its parent.",
    ),
    "LienthongUpstreamDown": (
        "Xem lỗi gần nhất của trục (/ops/, GET /status); kiểm tra địa chỉ, tài khoản "
        "trong [upstreams] và liên hệ đơn vị vận hành trục.",
        "Read the upstream's last error (/ops/, GET /status); check the endpoint and the "
        "credentials in [upstreams], and ask the axis's operator.",
    ),
}

_SEVERITY_VI = {"critical": "nghiêm trọng", "warning": "cần chú ý"}
_STATE = {FIRING: ("CẢNH BÁO", "FIRING"), RESOLVED: ("ĐÃ HẾT", "RESOLVED")}


@dataclass(frozen=True)
class Transition:
    """An alert that started (firing) or ended (resolved) at one node, at one check."""

    state: Literal["firing", "resolved"]
    alert: Alert
    node: str
    at: datetime

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.state, *self.alert.key)


def _at(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


def webhook_payload(t: Transition) -> dict[str, Any]:
    """The JSON body of a webhook call; ``text`` suits chat webhooks (Mattermost, Rocket.Chat)."""
    a = t.alert
    vi, en = RUNBOOK.get(a.name, ("", ""))
    state_vi, state_en = _STATE[t.state]
    return {
        "node": t.node,
        "status": t.state,
        "alert": a.name,
        "severity": a.severity,
        "subject": a.subject or None,
        "summary": a.summary,
        "summary_vi": a.summary_vi,
        "since": _at(a.since),
        "at": _at(t.at),
        "runbook": en,
        "runbook_vi": vi,
        "text": f"[{state_vi}] {t.node}: {a.summary_vi}\n[{state_en}] {t.node}: {a.summary}",
    }


def email_subject(t: Transition) -> str:
    state_vi, state_en = _STATE[t.state]
    about = f" {t.alert.subject}" if t.alert.subject else ""
    return f"[lienthong {t.node}] {state_vi} / {state_en}: {t.alert.name}{about}"


def email_body(t: Transition) -> str:
    a = t.alert
    vi, en = RUNBOOK.get(a.name, ("", ""))
    severity_vi = _SEVERITY_VI.get(a.severity, a.severity)
    if t.state == FIRING:
        state_vi, state_en = "đang báo", "firing"
    else:
        state_vi, state_en = f"đã hết lúc {_at(t.at)}", f"resolved at {_at(t.at)}"
    return (
        f"Nút: {t.node}\n"
        f"Cảnh báo: {a.name} ({severity_vi})\n"
        f"Nội dung: {a.summary_vi}\n"
        f"Bắt đầu: {_at(a.since)}\n"
        f"Trạng thái: {state_vi}\n"
        f"Việc cần làm: {vi}\n"
        "\n"
        f"Node: {t.node}\n"
        f"Alert: {a.name} ({a.severity})\n"
        f"What: {a.summary}\n"
        f"Since: {_at(a.since)}\n"
        f"Status: {state_en}\n"
        f"What to do: {en}\n"
    )
