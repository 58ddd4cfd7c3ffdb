"""The error codes are stable, unique, and all documented in docs/errors.md."""

from __future__ import annotations

import inspect
from pathlib import Path

from exchange import errors

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def _error_classes() -> list[type[errors.LienthongError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.LienthongError)
    ]


def test_every_code_is_unique() -> None:
    codes = [cls.code for cls in _error_classes()]
    assert len(codes) == len(set(codes))


def test_every_code_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [cls.code for cls in _error_classes() if f"`{cls.code}`" not in text]
    assert not missing


def test_every_error_belongs_to_one_branch() -> None:
    roots = (errors.SenderFault, errors.TransientFault, errors.PermanentFault)
    for cls in _error_classes():
        if cls in (errors.LienthongError, *roots):
            continue
        assert sum(issubclass(cls, root) for root in roots) == 1, cls


def test_errors_cross_a_process_boundary_whole() -> None:
    """The admission pool sends errors back from worker processes."""
    import pickle

    problem = errors.Problem(7, "/edXML/x", "bad", "contract.format")
    for error in (
        errors.ContractViolation([problem]),
        errors.MalformedXml("not XML", line=3),
        errors.SignatureInvalid("changed after signing"),
        errors.RevocationUnknown("no CRL"),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert (copy.code, copy.message, str(copy)) == (error.code, error.message, str(error))
    assert pickle.loads(pickle.dumps(errors.ContractViolation([problem]))).problems == (problem,)
    assert pickle.loads(pickle.dumps(errors.MalformedXml("x", line=3))).line == 3
