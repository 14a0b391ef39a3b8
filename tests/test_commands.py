"""One entry point: `pixelcnn-studio COMMAND` (or `python main.py COMMAND`) runs each
headless command, and the app's own --help lists them."""

import pytest

import main


def exit_status(argv) -> int:
    try:
        return main.main(argv)
    except SystemExit as stop:  # argparse's --help and errors
        return stop.code or 0


@pytest.mark.parametrize("name", sorted(main.COMMANDS))
def test_every_command_runs_under_its_own_name(name, capsys):
    assert exit_status([name, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: pixelcnn-studio {name} ")


def test_the_apps_help_lists_every_command(capsys):
    assert exit_status(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, about) in main.COMMANDS.items():
        assert f"  {name}" in out and about in out


def test_a_command_returns_its_exit_status(capsys):
    assert exit_status(["evaluate", "--model", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err
