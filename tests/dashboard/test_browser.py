"""The dashboard in a real browser: Debian's Chromium driven by Playwright, over the demo.

The recorded session plays through the replay engine (the real pipeline, store and scorer,
market data as of each moment: :func:`callsbot.demo.open_demo`) with the dashboard served on a
free port; the test steps the session itself, so nothing waits on the wall clock to move time.
Without Chromium (or Playwright) the test is skipped with the reason; with
``REQUIRE_BROWSER_TEST=1`` (CI, ``.ci/run``) that is a failure instead.

The screenshot lands in ``artefacts/dashboard.png`` (git-ignored).
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callsbot.alert import clean
from callsbot.config import Settings
from callsbot.dashboard.sources import (
    AlertKey,
    CopyRelation,
    DashboardSources,
    GroupRow,
    GroupsView,
    Interval,
    ScoreboardRow,
)
from callsbot.demo import DemoRun, Serve, open_demo
from callsbot.sources.replay import RecordedMessage
from callsbot.testing.dexscreener import make_pair
from tests.dashboard.rig import T0, TOKEN, alert_sent, mention, served, verdict

CHROMIUM = Path(os.environ.get("CALLSBOT_CHROMIUM", "/usr/bin/chromium"))
ARTEFACTS = Path(__file__).resolve().parents[2] / "artefacts"
FROGGY = "GeAwjtCeZvMqyN5kg2fi9vK8vHnuwSHEVgPm7M2Upump"
HOSTILE_TOKEN = "Ae53BESDWAcZ8rPrKtQoRVziHdYtZTrV7H9DQMBxabMz"
HOSTILE_NAME = ("<img src=x onerror=alert(document.domain)>\u202e" + "gnp.exe " * 700)[:5000]


@pytest.fixture
def playwright_api() -> Any:
    """Playwright's async API, or a skip (a failure when the browser is required)."""
    problem = None
    try:
        from playwright import async_api
    except ImportError:
        problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem is None and not CHROMIUM.exists():
        problem = (
            f"{CHROMIUM} is missing (Debian: apt-get install chromium; make test does it as root)"
        )
    if problem is not None:
        if os.environ.get("REQUIRE_BROWSER_TEST") == "1":
            pytest.fail(f"browser test required (REQUIRE_BROWSER_TEST=1) but {problem}")
        pytest.skip(f"browser test skipped: {problem}")
    return async_api


@pytest.fixture
async def demo() -> AsyncIterator[DemoRun]:
    async with open_demo(Settings(), out=io.StringIO(), quiet=True, serve=Serve(port=0)) as run:
        yield run


async def play_until(demo: DemoRun, t: int) -> None:
    while demo.t <= t and await demo.step():
        pass


async def groups_of(demo: DemoRun, token: str) -> int:
    """How many groups the dashboard's state shows for ``token`` (asked on its own loop)."""
    now = demo.clock.time()
    row = await demo.on_dashboard(lambda dash: dash.state.row(token, now))
    return 0 if row is None else int(row["groups"])


@pytest.mark.timeout(180)
async def test_the_dashboard_shows_consensus_forming_in_chromium(
    playwright_api: Any, demo: DemoRun
) -> None:
    pw = playwright_api
    expect = pw.expect
    port = await demo.listening()
    await play_until(demo, 2620)  # 44 minutes in: four alerts, FROGGY called by one group
    assert await groups_of(demo, FROGGY) == 1
    tokens, alerts = await demo.on_dashboard(
        lambda dash: (len(dash.state.tokens), len(dash.state.alert_keys))
    )

    problems: list[str] = []
    dialogs: list[str] = []
    async with pw.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = await browser.new_page(viewport={"width": 1600, "height": 1000})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            async def on_dialog(dialog: Any) -> None:
                dialogs.append(dialog.message)
                await dialog.dismiss()

            page.on("dialog", on_dialog)
            await page.goto(f"http://127.0.0.1:{port}/dash")

            # The snapshot is rendered: one row per token, the alerts, the live stream.
            rows = page.locator("#tokens tr")
            await expect(rows).to_have_count(tokens)
            await expect(page.locator("#alerts tr")).to_have_count(alerts)
            await expect(page.locator("#conn")).to_have_text("live")
            froggy = page.locator(f'#tokens tr[data-token="{FROGGY}"]')
            await expect(froggy.locator(".sym a")).to_have_text("$FROGGY")
            await expect(froggy.locator(".count")).to_have_text("1")
            await expect(page.locator("#scoreboard")).to_contain_text("Not available")

            # A recorded mention: the unnamed channel calls FROGGY at 44 min 20 s.
            loop = asyncio.get_running_loop()
            while await groups_of(demo, FROGGY) == 1:
                assert await demo.step()
            recorded_at = loop.time()
            await expect(froggy.locator(".count")).to_have_text("2", timeout=2000)
            assert loop.time() - recorded_at < 2.0
            await expect(froggy.locator(".call")).to_have_count(2)

            # A token whose market data names it with markup, a bidi override and 5,000 chars.
            demo.add_pair(
                make_pair(HOSTILE_TOKEN, base_name=HOSTILE_NAME, base_symbol="<b>PWN</b>")
            )
            await demo.deliver(
                RecordedMessage(
                    group="@MarksGems", id=990_001, at=demo.t, text=f"CA: {HOSTILE_TOKEN}"
                )
            )
            hostile = page.locator(f'#tokens tr[data-token="{HOSTILE_TOKEN}"]')
            await expect(hostile).to_have_count(1, timeout=2000)
            shown = clean(HOSTILE_NAME)
            await expect(hostile.locator(".name")).to_have_text(shown)
            await expect(hostile.locator(".sym a")).to_have_text("$<b>PWN</b>")
            assert shown.startswith("<img src=x onerror=alert(document.domain)>gnp.exe")
            assert await page.locator("img").count() == 0
            assert await page.locator("b:text('PWN')").count() == 0
            assert await page.evaluate("document.querySelectorAll('[onerror]').length") == 0
            text = await page.locator("#tokens").inner_text()
            assert "\u202e" not in text
            box = await hostile.bounding_box()
            assert box is not None
            assert box["height"] < 80  # one row, not a wall of text

            ARTEFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTEFACTS / "dashboard.png"), full_page=True)
        finally:
            await browser.close()
    assert dialogs == []
    assert problems == []


SCOREBOARD = [
    ScoreboardRow("0", Interval(0.08, 0.04, 0.15, 120)),
    ScoreboardRow("1", Interval(0.14, 0.09, 0.21, 160)),
    ScoreboardRow("2", Interval(0.27, 0.18, 0.38, 70)),
    ScoreboardRow("3+", Interval(0.41, 0.27, 0.57, 37)),
]
GROUPS = GroupsView(
    (
        GroupRow("@MarksGems", Interval(0.33, 0.21, 0.47, 45), 45, 12),
        GroupRow("@batman_gem", Interval(0.22, 0.13, 0.35, 50), 50, 9),
    ),
    (CopyRelation("@MarksGems", "@pfultimate", 14, 95.0),),
)


async def scoreboard() -> list[ScoreboardRow]:
    return SCOREBOARD


async def groups() -> GroupsView:
    return GROUPS


async def outcomes(keys: object) -> dict[AlertKey, dict[str, float | None]]:
    return {AlertKey(TOKEN, T0 + 5): {"5m": 1.42, "15m": 0.87}}


@pytest.mark.timeout(120)
async def test_provider_panels_draw_whiskers_and_outcome_cells(playwright_api: Any) -> None:
    """The panels other parts will feed: stand-in providers, drawn with SVG and text only."""
    pw = playwright_api
    expect = pw.expect
    rig = served(sources=DashboardSources(outcomes=outcomes, scoreboard=scoreboard, groups=groups))
    await rig.publish(verdict(TOKEN, T0), mention(TOKEN, "@a", T0), alert_sent(TOKEN, T0 + 5))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(rig.dashboard.run(stop)), asyncio.create_task(rig.web.run(stop))]
    problems: list[str] = []
    try:
        port = await rig.web.listening()
        async with pw.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM))
            try:
                page = await browser.new_page(viewport={"width": 1600, "height": 700})
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                await page.goto(f"http://127.0.0.1:{port}/dash")
                await expect(page.locator("#scoreboard svg circle")).to_have_count(4)
                await expect(page.locator("#scoreboard svg")).to_contain_text("n=37")
                await expect(page.locator("#groups svg circle")).to_have_count(2)
                await expect(page.locator("#groups .copies")).to_contain_text("@pfultimate")
                cells = page.locator("#alerts tr td.out")
                await expect(cells).to_have_text(["×1.4", "×0.9", "·", "·", "·"])
                ARTEFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTEFACTS / "dashboard-providers.png"))
            finally:
                await browser.close()
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert problems == []
