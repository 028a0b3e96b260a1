"""The built wheel carries everything Vigil reads and runs away from the checkout.

Builds the sdist and the wheel from it as a user would (`python -m build`), installs the wheel
into a fresh virtualenv outside the checkout (dependencies from the package index pip is
configured with), and runs the installed `vigil` from another directory: the demo with every
component up, `vigil validate` against it, and `vigil check-config` on what it generated.
"""

from __future__ import annotations

import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.harness import REPO_ROOT, in_ci, require_binary

pytestmark = pytest.mark.integration

COMPONENTS = ("demo", "vigil-exporter", "vigil-forecaster", "vigil-remediator")


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO_ROOT)], REPO_ROOT)
    if built.returncode != 0:
        tail = (built.stdout + built.stderr)[-3000:]
        if in_ci():
            pytest.fail(f"python -m build failed:\n{tail}", pytrace=False)
        pytest.skip(f"python -m build failed (no package index?):\n{tail}")
    (path,) = out.glob("vigil-*.whl")
    return path


def test_wheel_carries_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    # whole folders, compared with the checkout, so a file added there cannot be left out
    for folder, package in (("rules", "vigil/rules"), ("deploy", "vigil/deploy"),
                            ("grafana/dashboards", "vigil/grafana/dashboards"),
                            ("grafana/provisioning", "vigil/grafana/provisioning"),
                            ("remediator/migrations", "vigil/remediator/migrations"),
                            ("remediator/console/templates", "vigil/remediator/console/templates"),
                            ("remediator/console/static", "vigil/remediator/console/static")):
        root = REPO_ROOT / folder
        shipped = {p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
                   and not (folder == "deploy" and p.parent.name == "secrets")}
        assert shipped, folder
        missing = {f"{package}/{rel}" for rel in shipped} - names
        assert not missing, f"not in the wheel: {sorted(missing)}"
    # nothing in deploy/secrets/ travels: a deployment's secret files live there
    assert [n for n in names if "/secrets/" in n] == []


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("venv") / "v"
    venv.create(env, with_pip=True)
    done = _run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                env.parent)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return env


def test_installed_vigil_runs_away_from_the_checkout(installed: Path,
                                                     tmp_path: Path) -> None:
    for binary in ("prometheus", "prometheus-alertmanager"):
        require_binary(binary)
    vigil = str(installed / "bin" / "vigil")
    python = str(installed / "bin" / "python")
    where = _run([python, "-c", "import vigil.paths as p; print(p.RULES_DIR); print(p.DEPLOY_DIR)"],
                 tmp_path)
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).is_relative_to(installed), line
        assert not Path(line).is_relative_to(REPO_ROOT), line

    work = tmp_path / "demo"
    # a relative --workdir, as a user types it
    demo = subprocess.Popen([vigil, "demo", "--duration", "45", "--workdir", "demo", "--keep"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert demo.stdout is not None
    lines: list[str] = []
    for line in demo.stdout:
        lines.append(line)
        if line.startswith("Prometheus `up`"):
            break
    transcript = "".join(lines)
    try:
        up = dict(re.findall(r"([\w-]+)=(\d)", lines[-1])) if lines else {}
        assert all(up.get(c) == "1" for c in COMPONENTS), transcript

        validate = _run([vigil, "validate", "--config.file", str(work / "config" / "exporter.yml")],
                        tmp_path, timeout=120)
        assert validate.returncode == 0, validate.stdout + validate.stderr
        assert "vigil validate: passed" in validate.stderr

        configs = [*(work / "config").glob("*.yml"), work / "demo-target" / "config.yaml"]
        configs = [c for c in configs if c.name != "alertmanager.yml"]  # amtool's, not ours
        checked = _run([vigil, "check-config", *map(str, configs)], tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.count("SUCCESS") == len(configs) >= 4

        # a user's own configuration, written by the installed `vigil init`
        init = _run([vigil, "init", "mine", "--service", "shop"], tmp_path)
        assert init.returncode == 0, init.stderr
        mine = [str(tmp_path / "mine" / n) for n in ("exporter.yml", "remediator.yml")]
        own = _run([vigil, "check-config", *mine], tmp_path)
        assert own.returncode == 0, own.stdout + own.stderr

        # `vigil rules generate` renders the rules from the bundled service spec
        generated = _run([vigil, "rules", "generate", "--out", str(tmp_path / "rules")], tmp_path)
        assert generated.returncode == 0, generated.stdout + generated.stderr
        assert list((tmp_path / "rules").glob("*.rules.yml"))
    finally:
        rest, _ = demo.communicate(timeout=120)
    assert demo.returncode == 0, transcript + rest
    assert "vigil demo: stopped cleanly" in rest
