"""Secret files are private from the first byte."""

from __future__ import annotations

import stat
from pathlib import Path

from synapse_phenom.ops.files import write_private


def test_write_private_creates_owner_only_file_atomically(tmp_path: Path) -> None:
    target = tmp_path / "token"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, "s3cret")
    assert target.read_text() == "s3cret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token"]  # no temporary left behind
    write_private(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
