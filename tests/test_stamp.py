"""Validate once, trust by proof: the data folder's validation stamp (riskstrat.data.stamp)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from riskstrat.data import validate as validation
from riskstrat.data.load import load_data
from riskstrat.data.schema import EVENT_TABLES
from riskstrat.data.stamp import STAMP, file_hash
from riskstrat.data.validate import ValidationError, validate_data_dir
from riskstrat.features import _folder
from riskstrat.features.duckdb import DuckDBEngine
from riskstrat.modeling.config import ScoringConfig, load_config


@pytest.fixture
def folder(synthetic_2000, tmp_path):
    """A copy of the session's stamped 2,000-people folder, to edit."""
    return shutil.copytree(synthetic_2000, tmp_path / "data")


@pytest.fixture
def checked_tables(monkeypatch):
    """The tables whose rows validation's refusal-only checks (ranges) and row-dropping checks
    (repeats) ran on, and the tables the folder engines counted links for."""
    seen = {"range": set(), "duplicates": set(), "links": set()}

    def spy(name, original, table_of):
        def wrapper(*args, **kwargs):
            seen[name].add(table_of(*args))
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(validation, "_check_range", spy("range", validation._check_range, lambda log, table, *a: table.name))
    monkeypatch.setattr(validation, "_check_duplicates",
                        spy("duplicates", validation._check_duplicates, lambda log, table, *a: table.name))
    for hook in ("_link_counts", "_ids_all_known"):  # the link pass: counted, or proven from the id dictionaries
        monkeypatch.setattr(DuckDBEngine, hook, spy("links", getattr(DuckDBEngine, hook),
                                                    lambda self, plan, *a: plan.table.name))
    return seen


def data_config(path):
    return load_config(None, [f"data.path={path}"], model=ScoringConfig).data


def rewrite(path, change):
    table = pd.read_parquet(path)
    changed = change(table)  # a new frame, or None when ``change`` edits ``table`` in place
    (table if changed is None else changed).to_parquet(path, index=False)


def test_synth_stamps_what_was_checked_and_each_files_hash(synthetic_2000):
    stamp = json.loads((synthetic_2000 / STAMP).read_text())
    assert stamp["schema_version"] == "1.0" and "unknown_person" in stamp["checks"]
    assert stamp["options"] == {"duplicate_rows": "drop", "out_of_life_events": "drop", "unknown_codes": "error"}
    assert stamp["data_end"] == json.loads((synthetic_2000 / "dataset.json").read_text())["extract_end"]
    persons = stamp["tables"]["persons"]
    assert persons["hash"] == file_hash(synthetic_2000 / "persons.parquet") and persons["rows"] == 2000
    assert set(stamp["tables"]) >= {"persons", "inpatient_spells", "prescriptions"}


def test_validate_stamp_writes_a_stamp_and_a_failing_folder_loses_it(folder):
    from riskstrat.cli import app

    (folder / STAMP).unlink()
    result = CliRunner().invoke(app, ["validate", str(folder), "--stamp", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "stamped" in result.output and (folder / STAMP).is_file()
    rewrite(folder / "ae_attendances.parquet", lambda t: t.__setitem__("cost", -t["cost"].abs() - 1))
    result = CliRunner().invoke(app, ["validate", str(folder), "--stamp", "--quiet"])
    assert result.exit_code == 2 and "negative cost" in " ".join(result.output.split())
    assert not (folder / STAMP).exists()


def test_a_stamped_folder_loads_without_its_row_checks_and_equal_to_full_validation(folder, checked_tables):
    reference, report = validate_data_dir(folder)  # every row checked: no stamp trusted
    assert report.trust is None and "persons" in checked_tables["range"]
    for seen in checked_tables.values():
        seen.clear()
    messages = []
    records = load_data(data_config(folder), stage=messages.append)
    assert any(m.startswith("validation stamp verified (hashes) for persons") for m in messages), messages
    assert checked_tables["range"] == set()  # no refusal-only check ran
    stamp = json.loads((folder / STAMP).read_text())["tables"]
    # Repeats are dropped again only where the stamp says validation dropped some.
    assert checked_tables["duplicates"] == {n for n, e in stamp.items() if e["dropped"] or e["changed"]}
    assert set(records.tables) == set(reference.tables)
    for name in reference.tables:
        pd.testing.assert_frame_equal(records.tables[name], reference.tables[name], check_exact=True)


def test_the_duckdb_engine_skips_the_link_pass_for_stamped_tables(folder, checked_tables):
    messages = []
    engine = DuckDBEngine(folder, stage=messages.append)
    engine.check_links()
    assert checked_tables["links"] == set() and checked_tables["range"] == set()
    assert messages[0].startswith("validation stamp verified")
    (folder / STAMP).unlink()
    engine = DuckDBEngine(folder, stage=messages.append)
    engine.check_links()
    assert checked_tables["links"] == set(engine.sources)
    assert any(m.startswith("validation stamp ignored (no validated.json") for m in messages)


def test_an_edited_file_is_caught_and_rechecked_and_a_bad_edit_refused(folder, checked_tables):
    rewrite(folder / "ae_attendances.parquet", lambda t: t.iloc[:-1])
    messages = []
    records = load_data(data_config(folder), stage=messages.append)
    said = next(m for m in messages if "validation stamp" in m)
    assert "rows checked for ae_attendances (ae_attendances.parquet changed since it was stamped)" in said
    assert checked_tables["range"] == {"ae_attendances"}  # only the changed table's rows
    reference, _ = validate_data_dir(folder)
    pd.testing.assert_frame_equal(records.tables["ae_attendances"], reference.tables["ae_attendances"])

    rewrite(folder / "ae_attendances.parquet", lambda t: t.__setitem__("cost", -t["cost"].abs() - 1))
    with pytest.raises(ValidationError, match="negative cost"):
        load_data(data_config(folder))
    with pytest.raises(ValidationError, match="negative cost"):
        DuckDBEngine(folder)


def test_a_changed_persons_file_rechecks_every_table(folder):
    rewrite(folder / "persons.parquet", lambda t: None)  # same rows, other bytes
    trust = DuckDBEngine(folder).trust
    assert trust.tables == {} and trust.checked["inpatient_spells"] == "persons changed"
    assert "persons.parquet" in trust.checked["persons"] or "changed" in trust.checked["persons"]


def test_a_stamp_from_another_schema_version_is_ignored_with_a_message(folder, checked_tables):
    stamp = json.loads((folder / STAMP).read_text())
    (folder / STAMP).write_text(json.dumps({**stamp, "schema_version": "0.9"}))
    messages = []
    load_data(data_config(folder), stage=messages.append)
    said = next(m for m in messages if "validation stamp" in m)
    assert said.startswith("validation stamp ignored") and "schema version '0.9'" in said, said
    assert "persons" in checked_tables["range"]
    assert set(EVENT_TABLES) & checked_tables["duplicates"]


def test_a_stamp_made_with_other_options_is_not_trusted(folder):
    config = load_config(None, [f"data.path={folder}", "data.out_of_life_events=keep"], model=ScoringConfig).data
    messages = []
    load_data(config, stage=messages.append)
    assert any("validated with other options: out_of_life_events='drop' when stamped" in m for m in messages)
