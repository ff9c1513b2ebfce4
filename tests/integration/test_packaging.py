"""The Docker images' build steps, run here (no Docker engine on CI machines).

Each Dockerfile COPYs a build context and runs ``pip install .``; we copy exactly what it
COPYs, build the wheel the same way, and check it carries what the entrypoints use.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from harness import PRODUCTION_ENV, env_without_phenom

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["docker/Dockerfile.synapse", "docker/Dockerfile.mcp"]


def copied_sources(dockerfile: Path) -> list[str]:
    sources: list[str] = []
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
            shutil.copytree(
                src, context / source, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(src, context / source)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("synapse_phenom-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "synapse_phenom/templates/homeserver.yaml.j2" in names
    assert "synapse_phenom/templates/log.yaml.j2" in names
    # Implementation B's Hasura project (`phenom-chat lite migrate` reads it from the package)
    lite = "synapse_phenom/lite/hasura/"
    assert f"{lite}config.yaml" in names
    assert f"{lite}migrations/default/1796050000000_chat_schema/up.sql" in names
    assert f"{lite}migrations/default/1796050000000_chat_schema/down.sql" in names
    assert f"{lite}metadata/actions.graphql" in names
    assert f"{lite}metadata/databases/default/tables/chat_messages.yaml" in names
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
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


def _project_metadata() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_mcp_extra_brings_no_matrix_synapse() -> None:
    project = _project_metadata()
    extras = project["optional-dependencies"]
    assert "matrix-synapse" not in _names(project["dependencies"])
    assert "matrix-synapse" not in _names(extras["mcp"])
    assert "matrix-synapse" in _names(extras["synapse"])
    assert 'pip install --no-cache-dir ".[mcp]"' in (ROOT / "docker/Dockerfile.mcp").read_text()


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_mcp_install_resolves_without_matrix_synapse(tmp_path: Path) -> None:
    """What ``pip install .[mcp]`` (the MCP image) would install: pip's own resolution."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "-q",
            "--disable-pip-version-check",
            "--report",
            str(report),
            f"{ROOT}[mcp]",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    installed = {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}
    assert "mcp" in installed and "synapse-phenom" in installed
    assert not installed & {"matrix-synapse", "twisted", "signedjson"}


# Import names of what only the `synapse` and `lambda` extras install (pyahocorasick is in
# `mcp` too: BACKEND_TYPE=hasura sends through B's send path, which runs the moderation core).
NOT_IN_MCP_IMAGE = ("synapse", "twisted", "signedjson", "boto3", "botocore")


def test_mcp_sidecar_runs_without_synapse_installed(tmp_path: Path) -> None:
    """The sidecar's entry point and backend import with everything outside the base install
    and the `mcp` extra unimportable (matrix-synapse, Twisted, the Lambda and module libs)."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {NOT_IN_MCP_IMAGE!r}:\n"
        "            raise ImportError(f'{name} is not installed in the MCP image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from synapse_phenom.cli import main\n"
        "import synapse_phenom.mcp.server, synapse_phenom.mcp.synapse_backend\n"
        # The hasura backend and what it imports when first used (send path, previews, agents).
        "import synapse_phenom.mcp.hasura_backend, synapse_phenom.mcp.hasura_send\n"
        "import synapse_phenom.lite.actions, synapse_phenom.lite.provision\n"
        "import synapse_phenom.lite.previews_cache, synapse_phenom.moderation.keywords\n"
        "try:\n"
        "    main(['mcp', '--help'])\n"
        "except SystemExit as e:\n"
        "    sys.exit(e.code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage: phenom-chat mcp" in result.stdout
