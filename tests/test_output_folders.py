"""A folder riskstrat replaces as a whole (a report, an imported or generated data set) is replaced
only when riskstrat wrote it: a mistyped --out never deletes anybody's files."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from riskstrat.cli import app
from riskstrat.errors import RiskstratError
from riskstrat.data.io import FOLDER_MARKER, FolderNotOursError, atomic_path, check_replaceable


def _precious(folder):
    folder.mkdir(parents=True)
    (folder / "thesis.txt").write_text("years of work")
    (folder / "sub").mkdir()
    (folder / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _still(folder, kept):
    assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == kept


@pytest.mark.parametrize("kind", ["evaluation report", "monitoring report", "data set"])
def test_a_folder_riskstrat_did_not_write_is_never_replaced(tmp_path, kind):
    victim = tmp_path / "victim"
    kept = _precious(victim)
    with pytest.raises(FolderNotOursError, match=rf"{victim} already exists and is not a riskstrat {kind}"):
        with atomic_path(victim, directory=True, kind=kind) as tmp:
            (tmp / "report.html").write_text("new")
    _still(victim, kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]  # no temporary folder left
    assert issubclass(FolderNotOursError, RiskstratError)


def test_its_own_folder_of_the_same_kind_is_replaced_and_one_of_another_kind_is_not(tmp_path):
    out = tmp_path / "out"
    with atomic_path(out, directory=True, kind="evaluation report") as tmp:
        (tmp / "report.html").write_text("first")
    assert json.loads((out / FOLDER_MARKER).read_text()) == {"kind": "evaluation report"}
    with atomic_path(out, directory=True, kind="evaluation report") as tmp:
        (tmp / "report.html").write_text("second")
    assert (out / "report.html").read_text() == "second"
    with pytest.raises(FolderNotOursError, match="is not a riskstrat data set"):
        check_replaceable(out, "data set")


def test_absent_empty_and_older_versions_folders_are_replaceable(tmp_path):
    check_replaceable(tmp_path / "absent", "data set")
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", "data set")
    older = tmp_path / "older"
    older.mkdir()
    (older / "dataset.json").write_text("{}")  # a data set written before the marker existed
    (older / "persons.parquet").write_bytes(b"x")
    check_replaceable(older, "data set")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FolderNotOursError, match="is a file, not a folder"):
        check_replaceable(tmp_path / "file", "evaluation report")


def test_a_link_is_judged_by_what_it_points_to_and_only_the_link_is_replaced(tmp_path):
    victim = tmp_path / "victim"
    kept = _precious(victim)
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(FolderNotOursError):
        check_replaceable(tmp_path / "link", "evaluation report")
    _still(victim, kept)


def test_evaluate_out_pointing_at_a_folder_it_did_not_write_is_refused_before_any_work(tmp_path):
    victim = tmp_path / "victim"
    kept = _precious(victim)
    result = CliRunner().invoke(app, ["evaluate", "--model", "no-such-model/1", "--data", str(tmp_path),
                                      "--as-of", "2024-11-01", "--out", str(victim),
                                      "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert result.exit_code == 2
    assert "is not a riskstrat evaluation report" in " ".join(result.output.split())
    _still(victim, kept)


def test_synth_out_pointing_at_a_folder_it_did_not_write_is_refused(tmp_path):
    victim = tmp_path / "victim"
    kept = _precious(victim)
    result = CliRunner().invoke(app, ["synth", "--people", "100", "--years", "3", "--out", str(victim), "-q"])
    assert result.exit_code == 2 and "is not a riskstrat data set" in " ".join(result.output.split())
    _still(victim, kept)


@pytest.mark.parametrize(("kind", "sign"), [("data set", "dataset.json"), ("evaluation report", "evaluation.json"),
                                            ("monitoring report", "monitoring.json")])
def test_a_folder_with_the_sign_or_marker_but_other_entries_is_not_replaced(tmp_path, kind, sign):
    # The red team's case: dataset.json beside someone's raw/notes.csv, or lists beside a data set.
    older = tmp_path / "older"
    kept = _precious(older)
    (older / sign).write_text("{}")
    kept[sign] = b"{}"
    with pytest.raises(FolderNotOursError, match=r"also holds what riskstrat did not write there \(sub, thesis.txt\)"):
        check_replaceable(older, kind)
    ours = tmp_path / "ours"
    with atomic_path(ours, directory=True, kind=kind) as tmp:
        (tmp / sign).write_text("{}")
    (ours / "lists").mkdir()
    (ours / "lists" / "audit.jsonl").write_text("audit")
    with pytest.raises(FolderNotOursError, match=r"lists"):
        with atomic_path(ours, directory=True, kind=kind) as tmp:
            (tmp / sign).write_text("new")
    assert (ours / "lists" / "audit.jsonl").read_text() == "audit" and (ours / sign).read_text() == "{}"
    _still(older, kept)


def test_synth_twice_replaces_its_own_data_set(tmp_path):
    out = tmp_path / "data"
    for people in (100, 120):
        result = CliRunner().invoke(app, ["synth", "--people", str(people), "--years", "3", "--out", str(out), "-q"])
        assert result.exit_code == 0, result.output
    assert json.loads((out / "dataset.json").read_text())["n_people"] == 120
