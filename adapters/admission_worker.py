"""One admission worker process: ``python -m adapters.admission_worker NODE_FILE``.

It builds its admission context from the node file once, says so (or why it could not),
then judges the requests that come on its standard input, one at a time, and writes each
verdict on its standard output: frames of an 8-byte big-endian length and a pickle. A
request is ``(seq, kind, payload, policy)``, ``kind`` being ``"bytes"`` (the package) or
``"file"`` (a spooled large one); a verdict is ``(seq, ok, Admitted or the error)``; the
first frame is ``(-1, ok, None or the reason)``. The end of its input (the node closed the
pipe, or died) ends it.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # the verdicts get the real standard output; anything else printed, from here on and by
    # any library imported below, goes to the log (standard error)
    _VERDICTS = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

import pickle
from typing import BinaryIO

from adapters.admission_pool import HEADER, READY, admit_file, context_of
from exchange.admission import admit
from exchange.errors import PermanentFault


def read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    return body if len(body) == size else None


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def _verdict(seq: int, ok: bool, value: object) -> bytes:
    """The verdict's pickle, read back once: an error that would not arrive whole is told
    as one that does."""
    try:
        out = pickle.dumps((seq, ok, value), protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(out)  # noqa: S301 (our own bytes)
    except Exception as exc:  # noqa: BLE001 (whatever it was, the node gets a verdict)
        reason = f"admission failed: {type(value).__name__}: {value} ({exc})"
        return pickle.dumps((seq, False, PermanentFault(reason)))
    return out


def serve(config_file: str, requests: BinaryIO, verdicts: BinaryIO) -> None:
    try:
        context, cap = context_of(config_file)
    except Exception as exc:  # noqa: BLE001 (the node is told why, and stops)
        verdicts.write(frame(_verdict(READY, False, f"{type(exc).__name__}: {exc}")))
        verdicts.flush()
        return
    verdicts.write(frame(_verdict(READY, True, None)))
    verdicts.flush()
    while (body := read_frame(requests)) is not None:
        seq, kind, payload, policy = pickle.loads(body)  # noqa: S301 (from the node that started us)
        try:
            if kind == "file":
                value: object = admit_file(payload, policy, context, cap)
            else:
                value = admit(payload, policy, context)
            ok = True
        except Exception as exc:  # noqa: BLE001 (any error is the verdict, as in-process)
            value, ok = exc, False
        verdicts.write(frame(_verdict(seq, ok, value)))
        verdicts.flush()


def main() -> None:
    serve(sys.argv[1], sys.stdin.buffer, _VERDICTS)


if __name__ == "__main__":
    main()
