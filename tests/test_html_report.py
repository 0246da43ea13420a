"""The HTML report is self-contained, escapes the build's text, and lays bars out to scale."""

from __future__ import annotations

import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import make_record

from buildlib.core.fmt import format_duration
from buildlib.core.layout import BuildDir
from buildlib.report.html import render_html, skip_reasons, tick_label, tick_step
from buildlib.run.results import BuildRecord, Outcome, StepRecord

CHROMIUM = Path("/usr/bin/chromium")
EVIL = "<script>alert(\"x\")</script> & 'quoted'"


STEPS = (
    StepRecord(
        name="rust:core",
        outcome=Outcome.BUILT,
        start=0.0,
        end=12.0,
        worker=0,
        attempts=1,
        exit_code=0,
        reasons=("input changed: src/lib.rs",),
    ),
    StepRecord(
        name="web:deps", outcome=Outcome.CACHED, start=0.0, end=1.0, worker=1, cache_source="local"
    ),
    StepRecord(
        name="web:build",
        outcome=Outcome.RESTORED,
        start=1.0,
        end=3.0,
        worker=1,
        cache_source="remote",
    ),
    StepRecord(
        name=EVIL,
        outcome=Outcome.FAILED,
        start=3.0,
        end=8.0,
        worker=1,
        attempts=2,
        exit_code=2,
        reasons=(f"because {EVIL}",),
    ),
    StepRecord(
        name="native:napi",
        outcome=Outcome.BUILT,
        start=12.0,
        end=19.5,
        worker=0,
        attempts=1,
        exit_code=0,
    ),
    StepRecord(name="docs", outcome=Outcome.INTERRUPTED, start=8.0, end=11.0, worker=1, attempts=1),
    StepRecord(name="electron:package", outcome=Outcome.SKIPPED),
)
RECORD = make_record(
    steps=STEPS,
    wall=20.0,
    critical_path=("rust:core", "native:napi"),
    warnings=(f"warning about {EVIL}",),
)


DEPS = {
    "web:build": ("web:deps",),
    EVIL: ("web:build",),
    "native:napi": ("rust:core",),
    "electron:package": ("native:napi", EVIL),
}


class BarCollector(HTMLParser):
    """Every element carrying data-step, with its attributes (entities decoded)."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: dict[str, dict[str, str]] = {}
        self.layout = ""
        self._in_layout = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "data-step" in values:
            assert values["data-step"] not in self.bars, "two bars for one step"
            self.bars[values["data-step"]] = values
        self._in_layout = tag == "pre" and values.get("id") == "layout"

    def handle_endtag(self, tag: str) -> None:
        self._in_layout = False

    def handle_data(self, data: str) -> None:
        if self._in_layout:
            self.layout += data


def collect(page: str) -> BarCollector:
    parser = BarCollector()
    parser.feed(page)
    parser.close()
    return parser


def test_every_step_has_one_bar_with_its_duration_and_status() -> None:
    record = RECORD
    bars = collect(render_html(record, DEPS)).bars
    assert set(bars) == {s.name for s in record.steps}
    for step in record.steps:
        bar = bars[step.name]
        assert float(bar["data-duration"]) == pytest.approx(step.duration)
        assert step.outcome.value in bar["class"].split()
        assert ("critical" in bar["class"].split()) == (step.name in record.critical_path)
        assert step.name in bar["title"]
    assert "status: failed" in bars[EVIL]["title"]
    assert "attempts: 2" in bars[EVIL]["title"]
    assert f"why: because {EVIL}" in bars[EVIL]["title"]
    assert "remote cache" in bars["web:build"]["title"]
    assert "style" in bars["native:napi"] and "left:60.0000%" in bars["native:napi"]["style"]
    assert "width:37.5000%" in bars["native:napi"]["style"]


def test_text_from_the_build_is_escaped() -> None:
    page = render_html(RECORD, DEPS)
    assert EVIL not in page
    assert "<script>alert" not in page
    assert page.count("<script") == 1  # only the page's own script
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quoted&#x27;" in page


def test_the_page_is_self_contained() -> None:
    page = render_html(RECORD, DEPS)
    assert not re.search(r"https?://|//[a-z]|\bsrc=|\bhref=|@import|url\(|<link", page), (
        "the report must not load anything"
    )
    for label in ("release", "x86_64-unknown-linux-gnu", "20.0s", "50%"):
        assert label in page  # header: mode, target, wall, hit rate
    assert "critical path" in page


def test_formatting_helpers() -> None:
    assert format_duration(0.423) == "0.4s"
    assert format_duration(12.34) == "12.3s"
    assert format_duration(125) == "2m05s"
    assert [tick_step(w) for w in (0.0, 0.7, 8.0, 20.0, 95.0, 3600.0)] == [
        1.0,
        0.1,
        1.0,
        5.0,
        20.0,
        500.0,
    ]
    assert [tick_label(t) for t in (0, 0.30000000000000004, 40, 90, 120)] == [
        "0",
        "0.3 s",
        "40 s",
        "1 m 30 s",
        "2 m",
    ]


def _chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=True,
    )


@pytest.mark.chromium
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium (/usr/bin/chromium) is not installed: apt-get install chromium",
)
@pytest.mark.timeout(180)
def test_rendered_bar_widths_are_proportional_to_durations(tmp_path: Path) -> None:
    record = RECORD
    page = tmp_path / "report.html"
    page.write_text(render_html(record, DEPS), encoding="utf-8")
    dom = _chromium(tmp_path, page.as_uri(), "--dump-dom").stdout
    layout = json.loads(collect(dom).layout)  # written by the page's own JS after layout
    track = layout["track"]
    assert track > 500
    ran = [s for s in record.steps if s.worker >= 0]
    assert set(layout["bars"]) == {s.name for s in record.steps}
    for step in ran:
        bar = layout["bars"][step.name]
        # Width and offset, in pixels, are the step's share of the wall time.
        assert bar["width"] / track == pytest.approx(step.duration / record.wall, rel=0.02)
        assert bar["left"] / track == pytest.approx(step.start / record.wall, abs=0.002)
    assert layout["bars"]["electron:package"]["width"] == 0  # skipped: no bar drawn

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, page.as_uri(), f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- a failed build's page explains it (issue 13 item 6) ------------------------------------


def failed_build(tmp_path: Path) -> tuple[BuildDir, BuildRecord, dict[str, tuple[str, ...]]]:
    """A build in which `compile` failed with a gcc-style error, `link` and `package`
    never started, and `docs` (independent, 6 s) ran."""
    build_dir = BuildDir(tmp_path)
    logs = build_dir.logs("release", "x86_64-unknown-linux-gnu")
    logs.mkdir(parents=True)
    (logs / "compile.log").write_text(
        "cc -c src/a.c\nsrc/a.c:3:5: error: 'oops' undeclared\n"
        "    3 |   oops;\n      |   ^~~~\nmake: *** Error 1\n"
    )
    steps = (
        StepRecord(
            name="compile",
            outcome=Outcome.FAILED,
            start=0.0,
            end=2.0,
            worker=0,
            attempts=1,
            exit_code=2,
            log_path=str(logs / "compile.log"),
        ),
        StepRecord(name="link", outcome=Outcome.SKIPPED),
        StepRecord(name="package", outcome=Outcome.SKIPPED),
        StepRecord(
            name="docs",
            outcome=Outcome.BUILT,
            start=0.0,
            end=6.0,
            worker=1,
            attempts=1,
            exit_code=0,
            log_path=str(logs / "docs.log"),
        ),
    )
    record = make_record(
        steps=steps, wall=6.0, workspace=str(tmp_path), critical_path=("compile", "link", "package")
    )
    return build_dir, record, {"link": ("compile",), "package": ("link",), "docs": ()}


def test_a_failed_build_shows_the_error_the_skip_reasons_and_log_links(tmp_path: Path) -> None:
    build_dir, record, deps = failed_build(tmp_path)
    page = render_html(record, deps, build_dir)
    assert "FAILED compile (exit 2, 2.0s)" in page
    assert "first error, at <code>src/a.c:3:5</code>" in page
    assert "src/a.c:3:5: error: &#x27;oops&#x27; undeclared\n    3 |   oops;" in page
    assert "make: *** Error 1" in page  # the end of its log
    assert "not started: it needs compile, which failed" in page  # link, directly
    # link and package: the note on the timeline, the bar's tooltip, the table
    assert page.count("it needs compile, which failed") == 6
    # Logs are links relative to the page, so a downloaded .buildlib keeps them working.
    links = re.findall(r'<a class="log" href="([^"]+)">', page)
    assert "../logs/release-x86_64-unknown-linux-gnu/compile.log" in links
    assert all(
        (build_dir.reports / link).resolve().parent
        == build_dir.logs("release", "x86_64-unknown-linux-gnu")
        for link in links
    )
    # Nothing is loaded: the only references are those relative links.
    assert not re.search(r"https?://|//[a-z]|\bsrc=|@import|url\(|<link", page)
    # The critical path is marked on the steps that ran, never on those that did not.
    bars = collect(page).bars
    assert [n for n, b in bars.items() if "critical" in b["class"].split()] == ["compile"]


def test_skip_reasons_follow_the_failure_up_the_chain() -> None:
    record = make_record(
        steps=(
            StepRecord(name="a", outcome=Outcome.INTERRUPTED, start=0, end=1, worker=0),
            StepRecord(name="b", outcome=Outcome.SKIPPED),
            StepRecord(name="c", outcome=Outcome.SKIPPED),
            StepRecord(name="d", outcome=Outcome.SKIPPED),
        ),
        exit_code=130,
    )
    reasons = skip_reasons(record, {"b": ("a",), "c": ("b",), "d": ()})
    assert reasons == {
        "b": "not started: it needs a, which was interrupted",
        "c": "not started: it needs a, which was interrupted",
        "d": "not started: the build was interrupted",
    }
    stopped = make_record(steps=(StepRecord(name="x", outcome=Outcome.SKIPPED),), exit_code=1)
    assert "stopped at the first failure" in skip_reasons(stopped, {})["x"]


@pytest.mark.chromium
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium (/usr/bin/chromium) is not installed: apt-get install chromium",
)
@pytest.mark.timeout(180)
def test_chromium_shows_the_failure_above_the_timeline(tmp_path: Path) -> None:
    build_dir, record, deps = failed_build(tmp_path)
    build_dir.reports.mkdir(parents=True)
    page = build_dir.reports / "b.html"
    page.write_text(render_html(record, deps, build_dir), encoding="utf-8")
    dom = _chromium(tmp_path, page.as_uri(), "--dump-dom").stdout
    assert dom.index('class="failures"') < dom.index("<h2>Timeline</h2>")
    assert 'class="first-error"' in dom
