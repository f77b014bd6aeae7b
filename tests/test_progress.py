import logging

from facecluster.progress import Progress


def test_progress_lines_report_rate_and_eta(caplog):
    p = Progress(1000, "cw rounds", unit="nodes", every=0.0)
    p.t0 -= 10.0  # ten seconds ago
    with caplog.at_level(logging.INFO, logger="facecluster.progress"):
        p.update(250)
        p.close()
    first, last = caplog.messages
    assert first.startswith("cw rounds: 250/1,000 nodes (25 %)")
    assert "nodes/s" in first and "ETA 30 s" in first
    assert "250 nodes in 10.0 s" in last


def test_progress_is_quiet_between_intervals(caplog):
    p = Progress(10, "x", every=3600.0)
    with caplog.at_level(logging.INFO, logger="facecluster.progress"):
        for _ in range(10):
            p.update()
    assert caplog.messages == []
