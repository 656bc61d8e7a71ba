"""Packaging: the self-test from the source tree, the Linux .desktop file, and (opt-in) the frozen
bundle and the .deb built from it, each checked by running `--self-test` in a bare environment.

The frozen-bundle tests take several minutes (PyInstaller over torch, then the .deb) and write
about 1.5 GB to build/ and dist/, so they run only with UNMASK_PACKAGING_TEST=1:

    UNMASK_PACKAGING_TEST=1 .venv/bin/python -m pytest -m packaging
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DESKTOP_FILE = ROOT / "installer" / "linux" / "unmask-studio.desktop"
BUNDLE_EXE = ROOT / "dist" / "unmask-studio" / "unmask-studio"
CHECKS = ("window", "worker", "model", "draw", "ask")

packaging_opt_in = pytest.mark.skipif(
    os.environ.get("UNMASK_PACKAGING_TEST") != "1",
    reason="builds the frozen bundle and the .deb (minutes, ~1.5 GB on disk): "
           "set UNMASK_PACKAGING_TEST=1",
)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the bundle test drives the Linux build")


def bare_env(home: Path) -> dict[str, str]:
    """What a user's desktop session guarantees at least: no virtualenv, no PYTHONPATH, no Qt
    platform choice (the self-test must pick offscreen itself), no display."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": "/usr/bin:/bin", "HOME": str(home)}


def assert_self_test_passed(result: subprocess.CompletedProcess, where: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"self-test of {where} failed ({result.returncode}):\n{output}"
    assert "self-test passed" in result.stdout, output
    for check in CHECKS:
        assert f"  {check} " in result.stdout, f"no '{check}' line:\n{output}"


def run_self_test(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


# ---- fast: the source tree ----------------------------------------------------------------------
def test_desktop_file_validates():
    validator = shutil.which("desktop-file-validate")
    if validator is None:
        pytest.skip("desktop-file-validate not installed (apt-get install desktop-file-utils)")
    result = subprocess.run([validator, str(DESKTOP_FILE)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_self_test_runs_the_real_worker_from_the_source_tree(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY",
                                                            "WAYLAND_DISPLAY")}
    env["HOME"] = str(tmp_path)  # the self-test must not touch the user's settings either way
    result = run_self_test([sys.executable, "-m", "app.cli", "--self-test"], env, ROOT)
    assert_self_test_passed(result, "the source tree")
    assert "source checkout" in result.stdout
    assert "Qt platform 'offscreen'" in result.stdout
    # The worker is a separate process: its pid is not ours.
    pid_line = next(line for line in result.stdout.splitlines() if line.strip().startswith("worker"))
    assert f"pid {os.getpid()}," not in pid_line


def test_self_test_reports_a_broken_model_and_fails(tmp_path):
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env["HOME"] = str(tmp_path)
    result = run_self_test([sys.executable, "-m", "app.cli", "--self-test", "--model", str(broken)],
                           env, ROOT)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "self-test FAILED: model load failed" in result.stderr, result.stderr


# ---- opt-in: the trim list, the frozen bundle and the .deb --------------------------------------
@pytest.mark.packaging
@packaging_opt_in
def test_trim_list_leaves_out_nothing_a_real_run_imports():
    result = subprocess.run([sys.executable, str(ROOT / "packaging" / "check_trim.py")], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def bundle() -> Path:
    result = subprocess.run(["bash", str(ROOT / "packaging" / "build.sh"), "--log-level", "WARN"],
                            cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"packaging/build.sh failed:\n{result.stdout[-4000:]}" \
                                   f"{result.stderr[-8000:]}"
    assert BUNDLE_EXE.is_file(), f"{BUNDLE_EXE} was not built"
    print(result.stdout.strip().splitlines()[-1])  # bundle size and build time, with pytest -s
    return BUNDLE_EXE


@pytest.mark.packaging
@packaging_opt_in
@linux_only
def test_frozen_bundle_self_test_in_a_bare_environment(bundle, tmp_path):
    result = run_self_test([str(bundle), "--self-test"], bare_env(tmp_path / "home"), tmp_path)
    assert_self_test_passed(result, str(bundle))
    assert "frozen bundle" in result.stdout
    print(result.stdout)


@pytest.mark.packaging
@packaging_opt_in
@linux_only
def test_deb_installs_a_working_app(bundle, tmp_path):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not installed")
    result = subprocess.run(["bash", str(ROOT / "installer" / "linux" / "build-deb.sh")], cwd=ROOT,
                            capture_output=True, text=True, timeout=1800,
                            env={**os.environ, "DEB_COMPRESSION": "zstd"})  # contents are the same
    assert result.returncode == 0, result.stdout + result.stderr
    deb = next((ROOT / "dist").glob("unmask-studio_*.deb"))
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    control = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Depends"], check=True,
                             capture_output=True, text=True).stdout
    assert "Package: unmask-studio" in control
    assert os.readlink(root / "usr/bin/unmask-studio") == "/opt/unmask-studio/unmask-studio"
    assert (root / "usr/share/applications/unmask-studio.desktop").is_file()
    for size in (16, 32, 48, 64, 128, 256, 512):
        assert (root / f"usr/share/icons/hicolor/{size}x{size}/apps/unmask-studio.png").is_file()
    installed = root / "opt/unmask-studio/unmask-studio"
    result = run_self_test([str(installed), "--self-test"], bare_env(tmp_path / "home"), tmp_path)
    assert_self_test_passed(result, "the .deb's /opt/unmask-studio")
