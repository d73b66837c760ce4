"""The goflex-atp command line, run as a real subprocess: exit codes and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

from atp.flexoffer import SCHEMA_PATH, encode, offer_from_json, schema_json

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "flexoffers"


def run(*args, cwd=ROOT):
    proc = subprocess.run(
        [sys.executable, "-m", "atp.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc


def test_bundled_examples_are_valid():
    proc = run("validate", EXAMPLES)
    assert proc.returncode == 0, proc.stdout
    assert "6 offers: 6 valid, 0 invalid" in proc.stdout


def test_invalid_examples_produce_exactly_the_expected_report():
    folder = EXAMPLES / "invalid"
    for name in ("invalid_offers.json", "invalid_nan.jsonl"):
        proc = run("validate", name, cwd=folder)
        assert proc.returncode == 1
        expected = (folder / name.replace(".jsonl", ".json").replace(".json", ".expected.txt")).read_text()
        assert proc.stdout == expected


def test_unusable_files_get_a_sentence(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("")
    binary = tmp_path / "blob.json"
    binary.write_bytes(bytes(range(256)) * 4)
    big = tmp_path / "big.jsonl"
    with big.open("wb") as fh:
        fh.truncate(3 * 2**20)  # sparse 3 MiB file
    proc = run("validate", tmp_path / "missing.json", empty, binary, big, "--max-mib", "2")
    assert proc.returncode == 1
    assert "missing.json: no such file" in proc.stdout
    assert "empty.json: the file is empty" in proc.stdout
    assert "blob.json: looks like a binary file" in proc.stdout
    assert "big.jsonl: the file is 3.0 MiB, larger than the limit of 2 MiB" in proc.stdout


def test_jsonl_with_a_broken_line_names_the_line(tmp_path):
    f = tmp_path / "offers.jsonl"
    line = (EXAMPLES / "ev_charge.json").read_text().replace("\n", "")
    f.write_text(line + "\n" + line[:-5] + "\n")
    proc = run("validate", f)
    assert proc.returncode == 1 and "malformed JSON at line 2" in proc.stdout


def test_check_schedule_reports_rules():
    proc = run("check-schedule", EXAMPLES, ROOT / "examples" / "schedules" / "schedules.jsonl")
    assert proc.returncode == 1
    assert "5 schedules: 2 feasible, 3 infeasible" in proc.stdout
    assert "schedule 2: rule 5: assigned_at" in proc.stdout
    assert "schedule 4: rule 2: energy: has 8 steps but profile 1 has 4" in proc.stdout


def test_schema_in_repo_matches_the_model():
    assert SCHEMA_PATH.read_text() == schema_json(), "regenerate with: goflex-atp schema -o " + str(SCHEMA_PATH)
    proc = run("schema")
    assert proc.returncode == 0 and json.loads(proc.stdout) == json.loads(schema_json())


def test_examples_conform_to_the_schema():
    schema = json.loads(SCHEMA_PATH.read_text())
    for path in EXAMPLES.glob("*.json"):
        data = json.loads(path.read_text())
        jsonschema.validate(data, schema)
        jsonschema.validate(encode(offer_from_json(json.dumps(data))), schema)


def test_schema_rejects_what_the_codec_rejects():
    schema = json.loads(SCHEMA_PATH.read_text())
    bad = json.loads((EXAMPLES / "ev_charge.json").read_text())
    bad["colour"] = "red"
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
