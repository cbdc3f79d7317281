"""Profiles: files, the notebooks' parameters cells, and every real profile against notebooks/."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from offsetlab.lab.paths import notebooks_dir, profiles_dir
from offsetlab.lab.profiles import (
    ProfileError,
    Unparsed,
    check_profile,
    discover_notebooks,
    load_profile,
    notebook_parameters,
    profile_names,
    validate_profile,
)

PARAMS = '''bootstrap_servers = None  # set by the runner
run_id = None
gap_s = 0.2
n_messages: int = 5
members = 2
label = "fast"
enabled = True
topics = ["a", "b"]
deadline = gap_s * 10
'''


def write_notebook(path: Path, params: str | None) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# A question"))
    if params is not None:
        cell = nbformat.v4.new_code_cell(params)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_code_cell("x = 1  # not a parameter"))
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def notebooks(tmp_path: Path) -> dict[str, Path]:
    write_notebook(tmp_path / "01_first.ipynb", PARAMS)
    write_notebook(tmp_path / "02_plain.ipynb", None)
    return discover_notebooks(tmp_path)


def test_parameters_cell_names_and_literal_defaults(notebooks) -> None:
    params = notebook_parameters(notebooks["01_first"])
    assert params == {"bootstrap_servers": None, "run_id": None, "gap_s": 0.2, "n_messages": 5,
                      "members": 2, "label": "fast", "enabled": True, "topics": ["a", "b"],
                      "deadline": Unparsed("gap_s * 10")}
    assert "x" not in params
    assert notebook_parameters(notebooks["02_plain"]) == {}


def test_discover_lists_notebooks_sorted(notebooks) -> None:
    assert list(notebooks) == ["01_first", "02_plain"]


def test_load_profile_reads_mappings(tmp_path: Path) -> None:
    (tmp_path / "fast.yaml").write_text("# the notebooks' own defaults\n{}\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "seed.yaml").write_text("01_first:\n  gap_s: 3.0\n  members: 2\n02_plain:\n")
    assert load_profile("fast", tmp_path) == {}
    assert load_profile("empty", tmp_path) == {}
    assert load_profile("seed", tmp_path) == {"01_first": {"gap_s": 3.0, "members": 2}, "02_plain": {}}
    assert profile_names(tmp_path) == ["empty", "fast", "seed"]


@pytest.mark.parametrize("text, match", [
    ("- 01_first\n", "must map notebook names"),
    ("01_first: 3\n", "must map parameter names"),
    ("01_first: {gap_s: [\n", "not valid YAML"),
])
def test_load_profile_rejects_wrong_shapes(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ProfileError, match=match):
        load_profile("bad", tmp_path)


def test_a_missing_profile_names_the_ones_there_are(tmp_path: Path) -> None:
    (tmp_path / "fast.yaml").write_text("{}")
    with pytest.raises(ProfileError, match=r"no profile 'sead'.*profiles: fast"):
        load_profile("sead", tmp_path)


def test_validate_accepts_a_good_profile(notebooks) -> None:
    good = {"01_first": {"gap_s": 3, "n_messages": 50, "label": "seed", "enabled": False,
                         "topics": ["x"], "deadline": 99}}
    assert validate_profile(good, notebooks, name="seed") == []
    assert validate_profile({"02_plain": {}}, notebooks) == []


def test_validate_reports_every_problem(notebooks) -> None:
    bad = {
        "03_missing": {"gap_s": 1},
        "01_first": {"gap": 1, "run_id": "x", "members": "two", "enabled": 1, "n_messages": 2.5},
        "02_plain": {"anything": 1},
    }
    problems = validate_profile(bad, notebooks, name="seed")
    text = "\n".join(problems)
    assert len(problems) == 7, text
    assert "notebook '03_missing' does not exist" in text
    assert "01_first.gap is not a parameter of 01_first" in text
    assert "01_first.run_id is set by the suite runner" in text
    assert "01_first.members is 'two' (str)" in text
    assert "01_first.enabled is 1 (int)" in text
    assert "01_first.n_messages is 2.5 (float)" in text
    assert "02_plain.anything is not a parameter of 02_plain (its parameters: none)" in text
    with pytest.raises(ProfileError, match="03_missing"):
        check_profile(bad, notebooks)


def test_validate_takes_paths_too(notebooks) -> None:
    assert validate_profile({"01_first": {"gap_s": 1.0}}, list(notebooks.values())) == []


# -- the project's own profiles and notebooks: missing ones fail, they never skip ----------
REAL_PROFILES = profile_names(profiles_dir())  # [] if data/profiles is missing: fails below


def real_notebooks() -> dict[str, Path]:
    found = discover_notebooks(notebooks_dir())
    assert found, f"no notebooks in {notebooks_dir()}"
    return found


def test_the_project_has_its_profiles_and_notebooks() -> None:
    assert profiles_dir().is_dir(), f"{profiles_dir()} is missing"
    assert "fast" in REAL_PROFILES, f"{profiles_dir()}/fast.yaml is missing (found {REAL_PROFILES})"
    assert notebooks_dir().is_dir(), f"{notebooks_dir()} is missing"
    real_notebooks()


# With no profiles the one parameter names none, and load_profile fails saying so (an empty
# parameter list would make pytest skip the test instead).
@pytest.mark.parametrize("name", REAL_PROFILES or ["<no profiles found>"])
def test_every_profile_fits_the_notebooks(name: str) -> None:
    problems = validate_profile(load_profile(name), real_notebooks(), name=name)
    assert problems == []


def test_the_fast_profile_is_the_notebooks_defaults() -> None:
    # load_profile raises ProfileError if data/profiles/fast.yaml is missing
    assert load_profile("fast") == {}, "the stored defaults of each notebook are the fast profile"


def test_every_notebook_has_a_parameters_cell_for_the_runner() -> None:
    for stem, path in real_notebooks().items():
        params = notebook_parameters(path)
        missing = {"bootstrap_servers", "broker_kind", "run_id"} - set(params)
        assert not missing, f"{stem}: parameters cell lacks {sorted(missing)}"
