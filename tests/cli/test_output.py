"""The command line's output helpers: human units and a progress bar with rate and ETA."""

from __future__ import annotations

import io

from authmw.cli._output import ProgressBar, human_bytes, human_count


def test_human_bytes() -> None:
    """Sizes read as people write them, in decimal units."""
    assert human_bytes(None) == "-"
    assert human_bytes(512) == "512 B"
    assert human_bytes(125_441_452) == "125.4 MB"
    assert human_bytes(3_200_000_000) == "3.2 GB"


def test_human_count() -> None:
    """Counts get thousands separators; unknown is a dash."""
    assert (human_count(12345), human_count(None), human_count("redis")) == ("12,345", "-", "redis")


def test_progress_bar_shows_rate_elapsed_and_eta() -> None:
    """Each redraw names the kind, the share done, the rate, the elapsed time and an ETA."""
    out = io.StringIO()
    bar = ProgressBar(True, out)
    bar.update("tokens", 0, 1000, force=True)
    bar.update("tokens", 500, 1000, force=True)
    bar.finish()
    line = out.getvalue().splitlines()[-1]
    assert line.startswith("tokens") and "500/1,000" in line and "50%" in line
    assert "elapsed" in line and "/s" in line and "ETA" in line
