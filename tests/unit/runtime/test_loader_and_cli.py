"""Finding a function on disk, and `cascade serve`'s start-up checks (no server started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade.cli import main
from cascade.gunicorn import gunicorn_options
from cascade.loader import FunctionNotFound, find_function, load_function, load_module
from cascade.settings import Settings

GOOD = """
from cascade import Event, Function

class Asked(Event, type="com.example.loader.{name}"):
    pass

fn = Function("{name}")

@fn.on(Asked)
def handle(event, ctx):
    return None
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "func.py"
    path.write_text(text.replace("{name}", name))
    return folder


def test_folder_and_file_load_the_same_module(tmp_path: Path) -> None:
    folder = write(tmp_path / "one", "one", GOOD)
    by_folder = load_function(folder)
    by_file = load_function(folder / "func.py")
    assert by_folder is by_file
    assert by_folder.name == "one"


def test_function_file_can_import_its_neighbours(tmp_path: Path) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "helpers_for_two.py").write_text("GREETING = 'hi'\n")
    write(folder, "two", GOOD + "\nfrom helpers_for_two import GREETING\n")
    assert load_module(folder).GREETING == "hi"


def test_missing_path_is_explained(tmp_path: Path) -> None:
    with pytest.raises(FunctionNotFound, match="does not exist"):
        load_function(tmp_path / "missing")


def test_folder_without_func_py_is_explained(tmp_path: Path) -> None:
    with pytest.raises(FunctionNotFound, match="has no func.py"):
        load_function(tmp_path)


def test_non_python_file_is_explained(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(FunctionNotFound, match="not a Python file"):
        load_function(tmp_path / "x.txt")


def test_module_without_function(tmp_path: Path) -> None:
    write(tmp_path / "none", "none", "X = 1\n")
    with pytest.raises(FunctionNotFound, match="defines no cascade.Function"):
        load_function(tmp_path / "none")


def test_several_functions_need_a_name(tmp_path: Path) -> None:
    text = GOOD + '\nother = Function("second")\nother.on(Asked)(handle)\n'
    write(tmp_path / "many", "many", text)
    with pytest.raises(FunctionNotFound, match="several Functions"):
        load_function(tmp_path / "many")
    assert load_function(tmp_path / "many", "second").name == "second"
    with pytest.raises(FunctionNotFound, match="no Function named 'third'"):
        find_function(load_module(tmp_path / "many"), "third")


def test_broken_module_is_not_left_half_imported(tmp_path: Path) -> None:
    write(tmp_path / "broken", "broken", "raise RuntimeError('boom at import')\n")
    for _ in range(2):
        with pytest.raises(RuntimeError, match="boom at import"):
            load_module(tmp_path / "broken")


def test_serve_reports_a_bad_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path)], env={"PORT": "nope"})
    assert result.exit_code == 1
    assert "invalid setting: PORT='nope': not an integer" in result.output


def test_serve_reports_a_missing_function(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_serve_reports_an_import_error_with_its_location(tmp_path: Path) -> None:
    write(tmp_path / "syntax", "syntax", "def broken(:\n")
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "syntax")])
    assert result.exit_code == 1
    assert "cannot import" in result.output
    assert "SyntaxError" in result.output


def test_serve_reports_an_unusable_database(tmp_path: Path) -> None:
    folder = write(tmp_path / "db", "db", GOOD)
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    result = CliRunner().invoke(
        main,
        ["serve", str(folder)],
        env={"DATABASE_URL": f"sqlite:///{blocker}/x/y.sqlite3", "PROMETHEUS_MULTIPROC_DIR": ""},
    )
    assert result.exit_code == 1
    assert "cannot create the folder of SQLite file" in result.output


def test_serve_help_lists_the_options() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers", "--threads", "--graceful-timeout"):
        assert option in result.output


def test_gunicorn_preset_is_fork_safe_and_socketless(tmp_path: Path) -> None:
    fn = load_function(write(tmp_path / "preset", "preset", GOOD))
    options = gunicorn_options(fn, Settings(port=9999, workers=3, threads=2))
    assert options["control_socket_disable"] is True
    assert options["bind"] == ["127.0.0.1:9999"]
    assert (options["workers"], options["threads"]) == (3, 2)
    assert options["preload_app"] is False
    assert options["accesslog"] is None
    for hook in ("post_fork", "post_worker_init", "child_exit", "worker_exit"):
        assert callable(options[hook])
    assert gunicorn_options(fn, Settings(host="::1"))["bind"] == ["[::1]:8080"]
