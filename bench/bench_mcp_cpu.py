"""CPU per tools/call of the MCP app itself, in one process, without Synapse or sockets.

The real ``build_app`` (auth, scope gate, the light path or the SDK, tools, models) in front
of a backend that answers at once with canned results (a sent message; a page of 20
messages), driven over ASGI by httpx2 in the same process. CPU time (``process_time``) per
call, client included: far less noisy than wall clock on a shared machine. Compare the two
paths in one run:

    .venv/bin/python bench/bench_mcp_cpu.py [--calls 500]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mcp_inprocess import LEGACY, MODERN, call_body, inprocess_mcp

CALLS: Sequence[tuple[str, dict[str, Any]]] = (
    ("send_message", {"room": "internal", "body": "bench"}),
    ("get_messages", {"room": "internal", "limit": 20}),
)


async def measure(calls: int, version: str, sdk_only: bool) -> dict[str, float]:
    out = {}
    async with inprocess_mcp(sdk_only) as mcp:
        for tool, args in CALLS:
            body, headers = call_body(tool, args, version), mcp.headers(version, tool)

            async def one(body: str = body, headers: dict[str, str] = headers) -> None:
                resp = await mcp.client.post("/mcp", content=body, headers=headers)
                if resp.status_code != 200 or '"isError":true' in resp.text:
                    raise RuntimeError(resp.text[:300])

            for _ in range(50):
                await one()
            started = time.process_time()
            for _ in range(calls):
                await one()
            out[tool] = 1000 * (time.process_time() - started) / calls
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    results = {}
    for version in (LEGACY, MODERN):
        for label, sdk_only in (("SDK path", True), ("light path", False)):
            results[f"{version} {label}"] = anyio.run(measure, args.calls, version, sdk_only)
    print("CPU ms per tools/call (app + in-process client, canned backend):")
    for label, row in results.items():
        print(f"  {label:22}  " + "  ".join(f"{t} {ms:.2f}" for t, ms in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
