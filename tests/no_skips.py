"""A pytest plugin for `nox -s tests`: a skipped test fails, unless --allow-missing-tools.

The suite drives real tools (nginx, chromium, bazel-remote, actionlint, shellcheck,
strace, go, rustc, npm...) and skips a test whose tool is missing. On a newcomer's
machine that used to mean "passed, 26 skipped" while the remote cache, the HTML page
and the workflow were never tested. `nox -s tests` installs what it can first
(ci/install-tools.sh) and loads this plugin (`-p tests.no_skips`), so whatever is still
missing fails loudly, with the reason the test gave (which names the tool and how to
install it). `nox -s tests -- --allow-missing-tools` skips them on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

OPTION = "--allow-missing-tools"
HINT = (
    "nothing may be skipped under `nox -s tests`: install what is missing "
    "(`bash ci/install-tools.sh` does, where it can), or pass `-- --allow-missing-tools` "
    "to skip these tests on purpose"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        OPTION,
        action="store_true",
        default=False,
        help="let tests whose tools are missing be skipped (by default a skip fails the run)",
    )


def _reason(longrepr: Any) -> str:
    """A skip's reason: pytest keeps it as (file, line, 'Skipped: reason')."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _strict(config: pytest.Config) -> bool:
    return not config.getoption(OPTION)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail") and _strict(item.config):
        report.outcome = "failed"
        report.longrepr = f"skipped: {_reason(report.longrepr)}\n{HINT}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """A whole module skipped at import (`pytest.importorskip`) fails the same way."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and _strict(collector.config):
        report.outcome = "failed"
        report.longrepr = f"skipped: {_reason(report.longrepr)}\n{HINT}"
