from main import main, parse_arguments


def test_the_window_opens_and_closes_on_request(qapp):
    assert main(["--quit-after", "0.05"]) == 0


def test_quit_after_takes_seconds():
    assert parse_arguments(["--quit-after", "1.5"]).quit_after == 1.5
