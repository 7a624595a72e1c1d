"""The built distribution: four top-level import names, nothing else; and an installed worker that no file in
the operator's working directory can shadow (Dramatiq's CLI puts the current directory first on sys.path)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import ROOT, wait_for

TOP_LEVEL = {"actors", "middleware", "settings", "worker_service"}
DECOYS = ("errors", "events", "database", "web", "cli", "brokers", "outcome", "extraction", "groups")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    # from a copy of the tracked files: an in-tree build would reuse build/lib, stale modules included
    tree = tmp_path_factory.mktemp("tree") / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    for source in (tree, tree / "worker-contracts"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "-w",
                str(out),
                str(source),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    found = {p.name.split("-")[0]: p for p in out.glob("*.whl")}
    assert set(found) == {"worker_service", "worker_contracts"}, found
    return found


def _top_level(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = {n.split("/")[0] for n in archive.namelist()}
    return {n.removesuffix(".py") for n in names if not n.endswith((".dist-info", ".data"))}


def test_the_wheel_has_exactly_four_top_level_names(wheels):
    assert _top_level(wheels["worker_service"]) == TOP_LEVEL
    assert _top_level(wheels["worker_contracts"]) == {"worker_contracts"}
    with zipfile.ZipFile(wheels["worker_service"]) as archive:  # the package data travels with it
        files = set(archive.namelist())
    assert (
        "worker_service/brokers/lua/fetch.lua" in files and "worker_service/web/templates/base.html" in files
    )


@pytest.fixture()
def installed(wheels, tmp_path: Path) -> Iterator[Path]:
    """A fresh virtualenv with the two wheels; their dependencies are read from the dev environment's
    site-packages, added as a plain path (its own .pth files, such as the editable install's, are not run)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            *map(str, wheels.values()),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield venv


def _decoy_directory(tmp_path: Path) -> Path:
    here = tmp_path / "operator-cwd"
    here.mkdir()
    for name in DECOYS:
        (here / f"{name}.py").write_text(
            f"open({str(here / ('IMPORTED-' + name))!r}, 'w').close()\nraise SystemExit('decoy {name} imported')\n"
        )
    return here


def _env(worker_env: dict[str, str], venv: Path) -> dict[str, str]:
    env = {k: v for k, v in worker_env.items() if k != "PYTHONPATH"}  # the installed copy, not the checkout
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return env


def test_the_installed_worker_ignores_decoy_modules_in_its_working_directory(installed, worker_env, tmp_path):
    here = _decoy_directory(tmp_path)
    env = _env(worker_env, installed)
    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import worker_service, actors; print(worker_service.__file__, actors.__file__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT) not in where and str(installed) in where  # really the installed copy
    check = subprocess.run(
        [str(installed / "bin" / "worker"), "check"],
        cwd=here,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    Path(worker_env["STORAGE_ROOT"], "hello.txt").write_text("hello from an installed worker\n")
    # `dramatiq actors`, exactly as the design card runs it, from the directory full of decoys
    log = (tmp_path / "dramatiq.log").open("wb")
    worker = subprocess.Popen(
        [str(installed / "bin" / "python"), "-m", "dramatiq", "actors", "--processes", "1", "--threads", "1"],
        cwd=here,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        send = (
            "import sys; from worker_contracts import Sender; "
            "print(Sender(url=sys.argv[1]).process_asset('installed', 'file:hello.txt'))"
        )
        subprocess.run(
            [str(installed / "bin" / "python"), "-c", send, env["BROKER_URL"]],
            cwd=tmp_path,
            env=env,
            check=True,
            capture_output=True,
        )
        database = env["DATABASE_URL"].removeprefix("sqlite:///")

        def status() -> str | None:
            if worker.poll() is not None:
                raise AssertionError(
                    f"dramatiq actors exited {worker.returncode}: "
                    f"{(tmp_path / 'dramatiq.log').read_text()[-3000:]}"
                )
            try:
                with sqlite3.connect(database, timeout=5) as conn:
                    row = conn.execute("select status from asset where asset_id='installed'").fetchone()
            except sqlite3.OperationalError:
                return None
            return row[0] if row else None

        try:
            wait_for(lambda: status() == "extracted", 90, 0.3, "the installed worker processed the message")
        except AssertionError:
            raise AssertionError((tmp_path / "dramatiq.log").read_text()[-3000:]) from None
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
    assert sorted(p.name for p in here.glob("IMPORTED-*")) == []


def test_a_settings_module_in_the_working_directory_is_refused_with_the_reason(
    installed, worker_env, tmp_path
):
    """``settings`` is a pinned top-level name, so a ``settings.py`` where the operator starts (a Django project)
    would shadow ours: the worker refuses to start and says which file, instead of running on the wrong one."""
    here = tmp_path / "django-project"
    here.mkdir()
    (here / "settings.py").write_text("DEBUG = True\n")
    started = subprocess.run(
        [str(installed / "bin" / "python"), "-m", "dramatiq", "actors", "--processes", "1", "--threads", "1"],
        cwd=here,
        env=_env(worker_env, installed),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode != 0
    assert (
        f"settings ({here / 'settings.py'}) shadows the worker's own module"
        in started.stdout + started.stderr
    )
