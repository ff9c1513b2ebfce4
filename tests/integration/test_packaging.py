"""The Docker images' build steps, run here (no Docker engine on CI machines).

Each Dockerfile COPYs a build context and runs ``pip install .``; we copy exactly what it
COPYs, build the wheel the same way, and check it carries what the entrypoints use.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from harness import PRODUCTION_ENV, env_without_phenom

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["docker/Dockerfile.synapse", "docker/Dockerfile.mcp"]


def copied_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        m = re.match(r"^COPY\s+(?!--from)(.+)\s+\S+$", line.strip())
        if m:
            sources += m.group(1).split()
    return sources


@pytest.mark.slow  # dev tooling: not in the oldest-Synapse run (scripts/test-oldest)
@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_docker_build_context_builds_a_complete_wheel(dockerfile: str, tmp_path: Path) -> None:
    context = tmp_path / "src"
    context.mkdir()
    for source in copied_sources(ROOT / dockerfile):
        if source.startswith("docker/"):
            continue  # entrypoint scripts, not part of the package
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, context / source)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("synapse_phenom-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "synapse_phenom/templates/homeserver.yaml.j2" in names
    assert "synapse_phenom/templates/log.yaml.j2" in names
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))
    ).decode()
    assert "phenom-chat = synapse_phenom.cli:main" in entry_points


def test_synapse_entrypoint_renders_config(tmp_path: Path) -> None:
    """The entrypoint's first step, as the container runs it."""
    script = (ROOT / "docker/synapse-entrypoint.sh").read_text()
    assert "phenom-chat render-config" in script
    env = env_without_phenom(**PRODUCTION_ENV, PHENOM_DATA_DIR=str(tmp_path))
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    render_line = next(line for line in script.splitlines() if "render-config" in line)
    result = subprocess.run(["sh", "-c", render_line], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "homeserver.yaml").exists() and (tmp_path / "log.yaml").exists()
