"""ftctl rerun: failed, all or chosen items, with the settings stored in the results file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.cli.main import main

from tests.eval.evalkit import endpoint_cfg, read_output


def ftctl(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return done.value.code


def read(path: Path) -> tuple[dict, list[dict]]:
    lines = path.read_text().splitlines()
    return json.loads(lines[0])["meta"], [json.loads(ln) for ln in lines[1:]]


@pytest.fixture
def evaluated(run_eval, endpoint, fake, project) -> Path:
    run_eval(endpoint_cfg(endpoint, decoding={"temperature": 0.3}))
    assert fake.calls == 6
    return read_output(project, "results.jsonl")


def test_rerun_failed_by_default_links_to_the_old_file(evaluated, fake, tmp_path, capsys):
    fake.answers["Which planet is the largest?"] = "Jupiter, by far."  # the system was fixed
    out = tmp_path / "again.jsonl"
    assert ftctl("rerun", str(evaluated), "--out", str(out)) == 0
    assert fake.calls == 7 and fake.bodies[-1]["temperature"] == 0.3  # the stored decoding
    old_meta, _ = read(evaluated)
    meta, rows = read(out)
    assert [r["id"] for r in rows] == ["planet"] and rows[0]["passed"] is True
    assert meta["previous"] == str(evaluated.resolve())
    assert meta["overrides"] == {"select": "failed", "ids": ["planet"], "cache": False}
    assert meta["backend"] == old_meta["backend"] and meta["decoding"] == old_meta["decoding"]
    summary = json.loads((tmp_path / "again.summary.json").read_text())
    assert summary["passRate"] == 1.0 and summary["modelCalls"] == 1
    assert "1 newly passing" in capsys.readouterr().out


def test_rerun_all_and_chosen_ids_next_to_the_old_file(evaluated, fake):
    assert ftctl("rerun", str(evaluated), "--all") == 0
    assert fake.calls == 12
    [written] = sorted(evaluated.parent.glob("results.rerun-*.jsonl"))
    assert len(read(written)[1]) == 6
    written.unlink()
    assert ftctl("rerun", str(evaluated), "--ids", "fr,de") == 0
    assert fake.calls == 14
    [written] = sorted(evaluated.parent.glob("results.rerun-*.jsonl"))
    meta, rows = read(written)
    assert [r["id"] for r in rows] == ["de", "fr"] and meta["overrides"]["select"] == "ids"


def test_unknown_ids_are_named(evaluated, capsys):
    assert ftctl("rerun", str(evaluated), "--ids", "de,nope,zip") == 2
    assert "no item(s) nope, zip" in capsys.readouterr().err


def test_rerun_with_the_cache_makes_zero_model_calls(evaluated, fake, project, tmp_path):
    (project / "syn.local.json").write_text(json.dumps({"Jupiter": ["Saturn"]}))  # a lenient local override
    out = tmp_path / "cached.jsonl"
    code = ftctl("rerun", str(evaluated), "--all", "--cache", "--synonyms-override", str(project / "syn.local.json"), "--out", str(out))
    assert code == 0 and fake.calls == 6
    meta, rows = read(out)
    assert all(r["cached"] for r in rows) and all(r["passed"] for r in rows)
    assert meta["synonyms"] == {"Paris": ["City of Light"], "Jupiter": ["Saturn"]}
    summary = json.loads((tmp_path / "cached.summary.json").read_text())
    assert summary["modelCalls"] == 0 and summary["cache"] == {"hits": 6, "misses": 0}


def test_a_rerun_file_can_be_rerun_and_all_passing_means_nothing_to_do(evaluated, fake, tmp_path, capsys):
    fake.answers["Which planet is the largest?"] = "Jupiter"
    first = tmp_path / "r1.jsonl"
    ftctl("rerun", str(evaluated), "--out", str(first))
    assert ftctl("rerun", str(first)) == 0
    assert "nothing to rerun: all 1 item(s)" in capsys.readouterr().out
    assert not list(tmp_path.glob("r1.rerun-*"))


def test_a_file_that_is_not_eval_results_is_rejected(tmp_path, capsys):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"id": 1}\n')
    assert ftctl("rerun", str(bad)) == 2
    assert "not an eval results file" in capsys.readouterr().err


def test_a_damaged_result_line_is_named(evaluated, capsys):
    lines = evaluated.read_text().splitlines()
    lines[3] = json.dumps({"id": "fr", "passed": False})
    evaluated.write_text("\n".join(lines) + "\n")
    assert ftctl("rerun", str(evaluated), "--all") == 2
    assert "line 4: an eval result needs id, messages, checks and passed" in capsys.readouterr().err
