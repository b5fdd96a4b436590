"""Settings are strict: an unknown LSR_* variable is an error naming it (and the settings it
resembles), not a default silently left in force; the variables read outside Settings are
declared in one list and accepted. The CLI's local commands apply the settings as the server
does (LSR_TORCH_THREADS)."""
import pytest
import torch

from service.cli import main
from service.settings import OTHER_VARIABLES, Settings, UnknownSettingError, known_variables


def test_an_unknown_variable_is_named_with_its_close_matches(monkeypatch):
    monkeypatch.setenv("LSR_TORCH_THREAD", "2")
    with pytest.raises(UnknownSettingError) as err:
        Settings(_env_file=None)
    assert "LSR_TORCH_THREAD (did you mean LSR_TORCH_THREADS?)" in str(err.value)
    assert "the environment" in str(err.value)


def test_unknown_variables_without_a_close_match_and_in_any_case(monkeypatch):
    monkeypatch.setenv("LSR_FOO", "1")
    monkeypatch.setenv("lsr_datadir", "/tmp")  # settings match case-insensitively: so does the check
    with pytest.raises(ValueError) as err:
        Settings(_env_file=None)
    message = str(err.value)
    assert "LSR_FOO" in message and "LSR_FOO (did you mean" not in message
    assert "lsr_datadir (did you mean LSR_DATA_DIR?)" in message
    assert "LSR_TORCH_THREADS" in message  # the known ones are listed


def test_an_unknown_variable_in_the_env_file(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("LSR_PORT=9001\nLSR_MAX_KK=5\nOTHER_TOOL=1\n")
    with pytest.raises(UnknownSettingError) as err:
        Settings(_env_file=env)
    assert "the .env file: LSR_MAX_KK (did you mean LSR_MAX_K?)" in str(err.value)
    env.write_text("LSR_PORT=9001\nOTHER_TOOL=1\n")  # other tools' variables are theirs
    assert Settings(_env_file=env).port == 9001


def test_the_variables_read_outside_settings_are_accepted(tmp_path, monkeypatch):
    values = {"LSR_PRELOAD": "0", "LSR_URL": "http://127.0.0.1:9", "LSR_API_KEY": "k",
              "LSR_ONNX_CACHE": str(tmp_path), "LSR_CRASH_AT": "0",
              "LSR_CONSOLE_SCREENSHOTS": str(tmp_path)}
    assert set(values) == set(OTHER_VARIABLES)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LSR_TORCH_THREADS", "2")
    monkeypatch.setenv("LSR_MAX_K", "77")
    s = Settings(_env_file=None)
    assert s.max_k == 77 and s.torch_threads == 2
    assert {"LSR_MAX_K", "LSR_DATA_DIR", "LSR_PRELOAD", "LSR_URL"} <= set(known_variables())


def test_the_cli_refuses_an_unknown_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LSR_DATA_DIRR", str(tmp_path))
    assert main(["collections", "--data-dir", str(tmp_path)]) == 1
    assert "LSR_DATA_DIRR (did you mean LSR_DATA_DIR?)" in capsys.readouterr().err


def test_the_cli_honours_lsr_torch_threads(tmp_path, monkeypatch, capsys):
    """Local commands apply the settings as the server does (torch's intra-op threads are
    process-wide; the suite's autouse fixture restores them afterwards)."""
    n = 3 if torch.get_num_threads() != 3 else 2
    monkeypatch.setenv("LSR_TORCH_THREADS", str(n))
    monkeypatch.delenv("LSR_URL", raising=False)
    assert main(["collections", "--data-dir", str(tmp_path)]) == 0
    assert torch.get_num_threads() == n
