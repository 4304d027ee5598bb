"""The tour's console output: one line per step and a table that fits 100 columns, no progress bars."""

import pandas as pd
import pytest

from sklearn_interp import tour


def test_format_table_wraps_long_cells_within_the_width_and_keeps_every_word():
    table = pd.DataFrame({
        "method": ["SNMFDecomposer", "ChannelClusterForecaster"],
        "data": ["MiniLM L3 MLP, 20000×1536", "ETTh1-like series, 7 channels, lookback 96, horizon 24 " * 2],
        "fit time (s)": [1.5, 30.2],
        "quality": ["R² 0.241 at 15/1536 neurons per feature (SVD bound 0.402) " * 3, "MSE 0.41"],
    })
    text = tour.format_table(table, width=100)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].split() == ["method", "data", "fit", "time", "(s)", "quality"]
    for column in ("data", "quality"):
        for cell in table[column]:
            for word in cell.split():
                assert word in text
    # The narrow columns are not wrapped.
    assert "ChannelClusterForecaster" in text and "30.2" in text


def test_quiet_tour_prints_one_line_per_step_and_the_table_without_progress_bars(tmp_path, capfd):
    tour.main(["--out", str(tmp_path), "--n-sentences", "40", "--steps", "local_id"])
    captured = capfd.readouterr()
    assert "\r" not in captured.out + captured.err  # no progress-bar frames
    assert "Loading weights" not in captured.err and captured.err.strip() == ""
    lines = captured.out.splitlines()
    assert lines[0].startswith("[1/1] LocalIDEstimator: done in ")
    assert max(len(line) for line in lines) <= 100
    assert any(line.startswith("LocalIDEstimator  MiniLM blocks 0 and 5") for line in lines)
    assert (tmp_path / "index.html").is_file()


def test_verbose_tour_brings_the_progress_bars_back(tmp_path, capfd):
    tour.main(["--out", str(tmp_path), "--n-sentences", "40", "--steps", "local_id", "--verbose"])
    captured = capfd.readouterr()
    assert "Loading weights" in captured.err and "\r" in captured.err


def test_an_unknown_step_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown tour steps \['lid'\]"):
        tour.run_tour(tmp_path, steps=["lid"])
