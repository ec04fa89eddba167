from lvmae.foundation.progress import Summary, bar, human_bytes, human_seconds


def test_human_units():
    assert human_seconds(1.25) == "1.2 s" or human_seconds(1.25) == "1.3 s"
    assert human_seconds(125) == "2 min 5 s"
    assert human_seconds(7300) == "2 h 1 min"
    assert human_bytes(512) == "512 B"
    assert human_bytes(3 * 1024**2) == "3.0 MiB"


def test_summary_renders_rows_notes_and_wall_time():
    s = Summary("extract")
    s.add("videos ok", 1200).add("rate", 12.345).add("label", "x")
    for i in range(20):
        s.note(f"failed: video{i}.mp4")
    text = s.render(max_notes=5)
    assert "extract" in text and "1,200" in text and "12.3" in text and "wall time" in text
    assert "failed: video4.mp4" in text and "failed: video5.mp4" not in text
    assert "15 more" in text
    assert len(text.splitlines()) < 25  # one screen


def test_bar_counts_and_reports_rate():
    b = bar(range(10), total=10, desc="x", unit="seg", disable=False)
    assert sum(1 for _ in b) == 10
    assert b.format_dict["n"] == 10 and b.format_dict["unit"] == "seg"


def test_a_bar_in_a_log_prints_lines_with_count_rate_and_eta(capsys):
    import time

    b = bar(total=4, desc="extract", unit="video", interval=0.2)  # stderr is captured: not a terminal
    b.update(1)
    time.sleep(0.5)  # no update: the timer still reports
    b.update(3)
    b.close()
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines)
    assert lines[0].startswith("extract: 0/4 video") and lines[-1].startswith("extract: 4/4 video")
    assert any(line.startswith("extract: 1/4 video") and "video/s" in line and "<" in line for line in lines)
    assert len(lines) >= 3
    time.sleep(0.3)
    assert capsys.readouterr().err == ""  # closed: the timer stopped


def test_a_disabled_bar_prints_nothing(capsys):
    b = bar(range(3), total=3, desc="x", disable=True)
    assert list(b) == [0, 1, 2]
    assert capsys.readouterr().err == ""
