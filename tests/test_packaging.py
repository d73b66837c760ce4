"""The installed command: the wheel ships the Hydra configs, `goflex-twin` runs from any folder,
says what it does in `--help`, leaves no folder for a refused config, and writes a run folder
that others can read, whose timings add up and whose site grid is a checked reference."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from sim.outputs import GRID_NET_REF, OUTPUT_FILES, resolve_grid_net

ROOT = Path(__file__).resolve().parents[1]
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "outputs", "multirun", "build", "*.egg-info", "__pycache__", ".hypothesis", ".*_cache"
)


def goflex_twin() -> list[str]:
    """The console script beside this interpreter (what `pip install` made), else the module."""
    script = Path(sys.executable).with_name("goflex-twin")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "sim.app"]


def twin(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*goflex_twin(), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def test_the_wheel_ships_every_hydra_config(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCES)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", src],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("goflex_twin-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {p.relative_to(ROOT).as_posix() for p in (ROOT / "scenarios").rglob("*") if p.suffix in (".yaml", ".md")}
    assert "scenarios/config.yaml" in configs and "scenarios/scenario/sww.yaml" in configs
    assert configs <= names, sorted(configs - names)
    assert "scenarios/__init__.py" in names and "atp/flexoffer/flexoffer.schema.json" in names
    for group in ("scenario", "devices", "market", "grid", "dso", "fman", "sim"):
        assert any(n.startswith(f"scenarios/{group}/") and n.endswith(".yaml") for n in names), group


def test_the_config_composes_outside_the_repository(tmp_path):
    proc = twin("--cfg", "job", "scenario=sww", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "name: sww" in proc.stdout and "slice_s: 900" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_help_says_what_the_tool_does_before_hydras_help(tmp_path):
    proc = twin("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("goflex-twin: simulates a GOFLEX demo site")
    head = out[: out.index("== Configuration groups ==")]
    groups_named = ("scenario", "devices", "market", "grid", "dso", "fman", "sim")
    for word in (*groups_named, "-m scenario=", "outputs/", "goflex-report"):
        assert word in head, word
    groups = out[out.index("== Configuration groups ==") : out.index("== Config ==")]
    for line in (
        "scenario: esr, esr_congested, esr_moderate, foss, sww",
        "fman: balance_imbalance, least_cost",
        "dso: default",
    ):
        assert line in groups, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["scenario=foss", "sim.days=-1"], "sim.days"),
        (["scenario=foss", "devices.heat_pump.direct=-3"], "devices.heat_pump.direct"),
        (["-m", "scenario=foss", "sim.slice_s=7000"], "sim.slice_s"),
    ],
)
def test_a_refused_config_leaves_no_folder(tmp_path, args, key):
    proc = twin(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"goflex-twin: {key}")
    assert list(tmp_path.iterdir()) == []


def test_a_refused_config_keeps_a_folder_that_holds_other_files(tmp_path):
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("keep me\n")
    proc = twin("scenario=foss", "sim.days=-1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 2
    assert (run_dir / "notes.txt").read_text() == "keep me\n"


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One short run of the console script with the working directory outside the repository."""
    cwd = tmp_path_factory.mktemp("elsewhere")
    proc = twin("scenario=sww", "sim.days=0.25", "sim.start=2026-01-12T12:00:00Z", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (cwd / "outputs" / "sww").iterdir()
    return run_dir


def test_the_run_folder_is_complete_and_readable_by_others(cli_run):
    umask = os.umask(0)
    os.umask(umask)
    want = 0o666 & ~umask
    for name in (*OUTPUT_FILES, "timings.json", "report.html", "figures/site_load.png"):
        assert (cli_run / name).is_file(), name
    files = [p for p in cli_run.rglob("*") if p.is_file()]
    assert len(files) > len(OUTPUT_FILES)
    modes = {p.relative_to(cli_run).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(want)}, modes
    assert not [p for p in cli_run.rglob("*.part")]


def test_timings_parts_add_up_to_the_wall_time(cli_run):
    t = json.loads((cli_run / "timings.json").read_text())
    top = ("build_s", "run_s", "kpi_s", "outputs_s", "report_s", "other_s")
    assert sum(t[k] for k in top) == pytest.approx(t["wall_s"], rel=1e-12, abs=1e-12)
    assert sum(t["parts_s"].values()) == pytest.approx(t["wall_s"], rel=1e-12, abs=1e-12)
    assert {"build", "foa", "fman", "fmar", "physics", "power_flow", "dso", "simpy", "kpi", "outputs", "report"} <= set(
        t["parts_s"]
    )
    assert t["parts_s"]["other"] == t["other_s"]
    world = ("build", "foa", "fman", "fmar", "physics", "power_flow", "dso", "settle", "simpy")
    assert sum(t["parts_s"].get(k, 0.0) for k in world) == pytest.approx(t["build_s"] + t["run_s"], rel=1e-12)


def test_the_site_grid_is_a_reference_to_one_checked_cached_file(cli_run, tmp_path, monkeypatch):
    ref = json.loads((cli_run / GRID_NET_REF).read_text())
    assert not (cli_run / "grid_net.json").exists()
    assert (cli_run / GRID_NET_REF).stat().st_size < 4096
    net = resolve_grid_net(cli_run)
    assert net == Path(ref["path"]) and net.name == ref["file_name"] == f"net-{ref['sha256']}.json"
    assert hashlib.sha256(net.read_bytes()).hexdigest() == ref["sha256"] and net.stat().st_size == ref["bytes"]
    import pandapower

    assert len(pandapower.from_json(str(net)).bus) > 0

    # A moved run folder finds the file by name in the current cache (GOFLEX_TWIN_CACHE) ...
    moved = tmp_path / "moved"
    shutil.copytree(cli_run, moved, ignore=shutil.ignore_patterns("*.parquet", "*.jsonl", "figures"))
    elsewhere = dict(ref, path=str(tmp_path / "gone" / ref["file_name"]))
    (moved / GRID_NET_REF).write_text(json.dumps(elsewhere))
    cache = tmp_path / "cache" / "goflex-twin" / "grids"
    cache.mkdir(parents=True)
    monkeypatch.setenv("GOFLEX_TWIN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="run the same config again"):
        resolve_grid_net(moved)
    shutil.copyfile(net, cache / ref["file_name"])
    assert resolve_grid_net(moved) == cache / ref["file_name"]
    # ... and refuses a copy whose content is not the recorded one.
    with (cache / ref["file_name"]).open("ab") as fh:
        fh.write(b" ")
    with pytest.raises(FileNotFoundError, match="another SHA-256"):
        resolve_grid_net(moved)


def test_the_site_grid_goes_into_the_cache_once_or_into_the_run_folder_without_one(tmp_path, monkeypatch):
    """`_write_grid_net` on a real pandapower net: one cached file for two runs; an unusable cache
    (a file where the folder should be) puts `grid_net.json` into the run folder instead."""
    import pandapower.networks

    from sim.outputs import _write_grid_net

    world = SimpleNamespace(grid=SimpleNamespace(net=pandapower.networks.example_simple()))
    world.grid.net.load["p_mw"] = 0.7  # zeroed in the file, restored in the net
    monkeypatch.setenv("GOFLEX_TWIN_CACHE", str(tmp_path / "cache"))
    for run in ("a", "b"):
        _write_grid_net(world, tmp_path / run)
    cached = list((tmp_path / "cache" / "goflex-twin" / "grids").iterdir())
    assert len(cached) == 1 and resolve_grid_net(tmp_path / "a") == resolve_grid_net(tmp_path / "b") == cached[0]
    assert (world.grid.net.load["p_mw"] == 0.7).all()
    assert (tmp_path / "a" / GRID_NET_REF).read_text() == (tmp_path / "b" / GRID_NET_REF).read_text()

    (tmp_path / "blocked").write_text("not a folder\n")
    monkeypatch.setenv("GOFLEX_TWIN_CACHE", str(tmp_path / "blocked"))
    _write_grid_net(world, tmp_path / "c")
    local = tmp_path / "c" / "grid_net.json"
    assert resolve_grid_net(tmp_path / "c") == local
    assert json.loads((tmp_path / "c" / GRID_NET_REF).read_text())["path"] == str(local)
    assert local.read_bytes() == cached[0].read_bytes()
