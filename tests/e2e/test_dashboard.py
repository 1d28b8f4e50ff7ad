"""The dashboard in a real browser: headless Chromium drives each page of the real server, which
holds the demo models and traffic sent here.

Every test leaves a screenshot in ``test-artifacts/dashboard/`` (or under
``$MODEL_MANAGER_ARTIFACTS``). With ``MODEL_MANAGER_DOCS_SCREENSHOT=docs/dashboard.png`` the fleet
test also writes the README's picture there.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Dialog, Page, Request, Route, expect, sync_playwright

from tests.onnx_models import linear_model, offset_model, sqrt_model
from tests.support import ServerProcess, push

CHROMIUM = Path(os.environ.get("MODEL_MANAGER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MODEL_MANAGER_ARTIFACTS", REPO / "test-artifacts")) / "dashboard"
DOCS_SCREENSHOT = os.environ.get("MODEL_MANAGER_DOCS_SCREENSHOT")

X = [1.0, 2.0, 3.0, 4.0]
IRIS_ROW = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                        "data": [5.1, 3.5, 1.4, 0.2]}]}
IRIS_WRONG_TYPE = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4],
                               "data": [5.1, 3.5, 1.4, 0.2]}]}
CHARTED_MINUTES = {1: 2, 2: 3, 3: 4}
"""Requests sent to 'charted' in each of three minutes ahead of the real clock."""
SWAP = np.eye(4)[[1, 0, 2, 3]]
REFRESH_MS = 5000
"""How often the page reads the API again."""

expect.set_options(timeout=10_000)


def x_body(values: list[float], prediction_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                        "data": values}]}
    if prediction_id:
        body["id"] = prediction_id
    return body


@dataclasses.dataclass
class Fleet:
    server: ServerProcess
    clock: Path

    @property
    def url(self) -> str:
        return self.server.url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def shift_clock_to(self, at: float) -> None:
        """Make the server's clock read ``at`` (seconds since the epoch) now."""
        self.clock.write_text(f"{at - time.time():.6f}\n")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The demo server with these models beside the demo's:
    charted (requests in three different minutes), rooted (answers NaN for negative inputs),
    switch (v1 answers x, v2 answers x + 100; production v1), dupe (two versions of the same
    bytes, production v2), staged (v2 shadows v1 on every request; outcomes posted)."""
    root = tmp_path_factory.mktemp("dashboard")
    clock = root / "clock-offset"
    server = ServerProcess(root / "var", "--demo", "--clock-file", str(clock),
                           "--memory-budget", "1GiB", "--usage-flush-interval", "0.5s")
    fleet = Fleet(server, clock)
    models = root / "models"
    models.mkdir()
    try:
        with fleet.client() as client:
            push(client, "charted", offset_model(models / "charted.onnx", 1.0))
            minute = math.floor(time.time() / 60)
            for ahead, requests in CHARTED_MINUTES.items():  # 20 s into each minute
                fleet.shift_clock_to((minute + ahead) * 60 + 20)
                for _ in range(requests):
                    assert client.post("/v2/models/charted/infer", json=x_body(X)).status_code == 200
            sample = io.BytesIO()
            np.save(sample, np.random.default_rng(0).normal(5, 1, size=(300, 4)))
            client.put("/api/models/iris/versions/1/reference", params={"filename": "r.npy"},
                       content=sample.getvalue()).raise_for_status()
            client.patch("/api/models/iris/settings", json={"owner": "team-flowers"}
                         ).raise_for_status()
            for _ in range(10):
                assert client.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 200
            for _ in range(2):
                assert client.post("/v2/models/iris/infer", json=IRIS_WRONG_TYPE).status_code == 422
            push(client, "rooted", sqrt_model(models / "sqrt.onnx"))
            assert client.post("/v2/models/rooted/infer", json=x_body([1, 4, 9, 16])).status_code == 200
            for _ in range(3):
                assert client.post("/v2/models/rooted/infer", json=x_body([-1, 4, 9, 16])).status_code == 500
            push(client, "switch", offset_model(models / "zero.onnx", 0.0))
            push(client, "switch", offset_model(models / "hundred.onnx", 100.0))
            client.put("/api/models/switch/aliases/production", json={"version": 1}).raise_for_status()
            twin = offset_model(models / "seven.onnx", 7.0)
            push(client, "dupe", twin)
            push(client, "dupe", twin)
            client.put("/api/models/dupe/aliases/production", json={"version": 2}).raise_for_status()
            stage_a_shadow(client, models)
        yield fleet
    finally:
        server.stop()


def stage_a_shadow(client: httpx.Client, folder: Path) -> None:
    """'staged': v1 serves, v2 (classes 0 and 1 swapped) shadows every request; outcomes say v1
    was right each time."""
    push(client, "staged", linear_model(folder / "identity.onnx", np.eye(4)))
    push(client, "staged", linear_model(folder / "swapped.onnx", SWAP))
    client.put("/api/models/staged/aliases/production", json={"version": 1}).raise_for_status()
    client.patch("/api/models/staged/settings", json={"prediction_log_rate": 1.0}).raise_for_status()
    policy = {"routes": [{"version": 1, "weight": 100}], "shadows": [{"version": 2, "sample_rate": 1.0}]}
    client.put("/api/models/staged/traffic", json=policy).raise_for_status()
    rows = np.random.default_rng(3).random((20, 4)).astype(np.float32)
    for i, row in enumerate(rows):
        assert client.post("/v2/models/staged/infer", json=x_body(row.tolist(), f"s{i}")).status_code == 200
    deadline = time.monotonic() + 20
    while not any(p["pairs"] == len(rows) for p in client.get("/api/models/staged/shadow").json()["pairs"]):
        assert time.monotonic() < deadline, "the shadow comparisons did not arrive"
        time.sleep(0.1)
    outcomes = [{"id": f"s{i}", "value": int(np.argmax(row))} for i, row in enumerate(rows)]
    client.post("/api/models/staged/outcomes", json=outcomes).raise_for_status()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not at {CHROMIUM}: install Debian's chromium (`apt-get install "
                    f"chromium`, which `make install` runs) or point MODEL_MANAGER_CHROMIUM at it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh tab (its own session storage) on a laptop-sized screen; a screenshot of it is
    saved at the end, and a script error on the page fails the test."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=ARTIFACTS / f"{request.node.name}.png", full_page=True)
    context.close()
    assert not errors, errors


def answer_once(tab: Page, accept: bool = True) -> list[str]:
    """Answer the next confirmation dialog; the list receives its question."""
    questions: list[str] = []

    def answer(dialog: Dialog) -> None:
        questions.append(dialog.message)
        if accept:
            dialog.accept()
        else:
            dialog.dismiss()

    tab.once("dialog", answer)
    return questions


def served_output(client: httpx.Client, name: str) -> tuple[str, list[float]]:
    answer = client.post(f"/v2/models/{name}/infer", json=x_body(X)).json()
    return answer["model_version"], answer["outputs"][0]["data"]


def point_values(tab: Page, selector: str) -> list[float]:
    """The values of the chart markers: each marker's tooltip ends with its value."""
    titles = tab.locator(selector).evaluate_all("marks => marks.map(m => m.textContent)")
    return [float(title.rsplit("·", 1)[1].replace(",", "").split()[0]) for title in titles]


def test_fleet_lists_every_model_with_its_traffic_and_the_totals(fleet: Fleet, page: Page) -> None:
    page.goto(f"{fleet.url}/")
    rows = page.locator("table.fleet tbody tr[data-model]")
    expect(rows).to_have_count(7)
    expect(page.locator('[data-total="models"] .total-value')).to_have_text("7")
    expect(page.locator('[data-total="memory"] .total-note')).to_contain_text("of 1.0 GiB")
    iris = page.locator('tr[data-model="iris"]')
    expect(iris.locator('[data-column="production"]')).to_have_text("v1")
    expect(iris.locator('[data-column="hourRequests"]')).to_have_text("12")
    expect(iris.locator('[data-column="hourErrors"]')).to_have_text("2")
    expect(iris.locator('[data-column="loaded"]')).to_have_text("1 of 1")
    charted = page.locator('tr[data-model="charted"]')
    expect(charted.locator('[data-column="dayRequests"]')).to_have_text(str(sum(CHARTED_MINUTES.values())))
    expect(page.locator('tr[data-model="staged"] [data-column="staged"]')).to_have_text("shadow v2")
    if DOCS_SCREENSHOT:
        (REPO / DOCS_SCREENSHOT).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=REPO / DOCS_SCREENSHOT)

    page.get_by_role("button", name="Requests 1 h").click()
    expect(rows.first).to_have_attribute("data-model", "staged")  # the busiest first: 20 requests
    cells = rows.locator('[data-column="hourRequests"]').all_text_contents()
    counts = [int(n.replace(",", "")) for n in cells]
    assert counts == sorted(counts, reverse=True) and counts[0] == 20
    page.get_by_label("Filter models by name").fill("iris")
    expect(rows).to_have_count(2)
    page.get_by_label("Filter models by name").fill("")
    page.get_by_label("Show", exact=True).select_option("attention")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-model", "rooted")


def test_model_page_charts_the_requests_of_each_minute(fleet: Fleet, page: Page) -> None:
    page.goto(f"{fleet.url}/#/model/charted")
    requests = page.locator('figure[data-chart="requests"] circle.point')
    expect(requests).to_have_count(len(CHARTED_MINUTES))
    assert point_values(page, 'figure[data-chart="requests"] circle.point') == list(CHARTED_MINUTES.values())
    expect(page.locator('figure[data-chart="latency"] circle.point')).to_have_count(2 * len(CHARTED_MINUTES))
    expect(page.locator('figure[data-chart="errors"] circle.point')).to_have_count(len(CHARTED_MINUTES))
    assert point_values(page, 'figure[data-chart="errors"] circle.point') == [0, 0, 0]

    page.get_by_role("button", name="Last 30 days").click()
    daily = 'figure[data-chart="requests"] circle.point'
    expect(page.locator(daily).first).to_have_attribute("data-series", "v1")
    expect(page.locator('button[data-span="days"]')).to_have_attribute("aria-pressed", "true")
    page.wait_for_function("total => [...document.querySelectorAll('figure[data-chart=requests] "
                           "circle.point title')].reduce((n, t) => n + Number(t.textContent"
                           ".split('·').pop()), 0) === total", arg=sum(CHARTED_MINUTES.values()))


def test_a_span_chosen_while_the_page_reads_the_last_one_is_the_span_drawn(
        fleet: Fleet, page: Page) -> None:
    page.clock.install()
    page.goto(f"{fleet.url}/#/model/charted")
    caption = page.locator('figure[data-chart="requests"] figcaption')
    expect(caption).to_have_text("Requests per minute")
    expect(page.locator('figure[data-chart="requests"] circle.point')).to_have_count(len(CHARTED_MINUTES))
    held: list[Route] = []
    hour = re.compile(r"/usage/recent\?span=hour$")
    page.route(hour, lambda route: held.append(route))
    page.clock.run_for(REFRESH_MS)  # the page reads again, and waits on the last hour
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "the page did not read the last hour again"
        page.wait_for_timeout(50)
    status = page.locator("#status")
    before = status.text_content()

    page.get_by_role("button", name="Last 30 days").click()
    expect(caption).to_have_text("Requests per day")
    assert len(held) == 1
    held[0].continue_()  # the last hour arrives after the 30 days were drawn
    expect(status).not_to_have_text(before or "")  # that read is over: what did it say?
    assert (status.text_content() or "").startswith("Live · updated")
    expect(caption).to_have_text("Requests per day")
    expect(page.locator('button[data-span="days"]')).to_have_attribute("aria-pressed", "true")


def test_model_page_compares_the_shadow_and_scores_outcomes(fleet: Fleet, page: Page) -> None:
    with fleet.client() as client:
        pair = client.get("/api/models/staged/shadow").json()["pairs"][0]
    page.goto(f"{fleet.url}/#/model/staged")
    row = page.locator('table.shadow tr[data-shadow="2"]')
    expect(row).to_contain_text("v1 → v2")
    expect(row).to_contain_text(f"{pair['agreement'] * 100:.1f}%")
    expect(row.locator("svg.pair rect")).to_have_count(4)  # served and shadow p50 and p99
    expect(page.get_by_text("accuracy 100.0%")).to_be_visible()  # v1 was right every time
    expect(page.locator(".summary")).to_contain_text("shadow v2: 100.0% sampled")


def test_model_page_shows_the_owner_and_input_drift_per_column(fleet: Fleet, page: Page) -> None:
    page.goto(f"{fleet.url}/#/model/iris")
    expect(page.locator(".summary .chip.owner")).to_have_text("team-flowers")
    panel = page.get_by_label("Input drift")
    version = panel.locator('.drift-version[data-version="1"]')
    expect(version.locator("h3")).to_contain_text("10 live rows against 300 (upload)")
    figures = version.locator("figure.drift-column")
    expect(figures).to_have_count(3)  # the three most drifted columns
    for figure in figures.all():
        bins = figure.locator("rect.reference").count()
        assert bins >= 2 and figure.locator("rect.live").count() == bins  # paired bars per bin
        expect(figure.locator("figcaption")).to_contain_text("PSI")
        expect(figure.locator("figcaption")).to_contain_text("too few live rows")
    captions = " ".join(figures.locator("figcaption").all_text_contents())
    assert "input[" in captions or "output:" in captions


def test_the_owner_and_webhooks_are_set_from_the_model_page(fleet: Fleet, page: Page) -> None:
    page.goto(f"{fleet.url}/#/model/switch")
    panel = page.get_by_label("Owner and notifications")
    expect(panel).to_contain_text("Nobody is told of this model's events.")
    panel.get_by_label("Owner").fill("team-switch")
    panel.get_by_label("Webhook URLs, one per line").fill("https://hooks.example/a\nhttps://hooks.example/b")
    questions = answer_once(page)
    panel.get_by_role("button", name="Save owner and webhooks").click()
    expect(panel.locator("table.targets tbody tr")).to_have_count(2)
    assert questions == ["Save the owner and webhooks of switch?"]
    with fleet.client() as client:
        settings = client.get("/api/models/switch/settings").json()
    assert settings["owner"] == "team-switch"
    assert [t["url"] for t in settings["notify"]] == ["https://hooks.example/a",
                                                      "https://hooks.example/b"]
    expect(page.locator(".summary .chip.owner")).to_have_text("team-switch")


def test_nan_producing_model_shows_unhealthy_with_its_reason(fleet: Fleet, page: Page) -> None:
    page.goto(f"{fleet.url}/")
    badge = page.locator('tr[data-model="rooted"] .badge')
    expect(badge).to_have_text("unhealthy")
    expect(badge).to_have_class(re.compile(r"\bbadge-unhealthy\b"))
    expect(badge).to_have_attribute("title", re.compile(r"v1: invalid outputs in 75% of 4 requests.*NaN"))
    expect(page.locator('tr[data-model="iris"] .badge')).to_have_text("healthy")

    page.get_by_role("link", name="rooted").click()
    version = page.locator('table.versions tr[data-version="1"]')
    expect(version.locator(".badge")).to_have_text("unhealthy")
    expect(version).to_contain_text("invalid outputs in 75% of 4 requests")
    expect(version).to_contain_text("NaN or infinite")
    expect(page.locator('figure[data-chart="errors"] circle.point').first).to_be_visible()
    assert sum(point_values(page, 'figure[data-chart="errors"] circle.point')) == 3


def test_promoting_from_the_page_changes_what_the_server_serves(fleet: Fleet, page: Page) -> None:
    with fleet.client() as client:
        assert served_output(client, "switch") == ("1", X)
        page.goto(f"{fleet.url}/#/model/switch")
        expect(page.locator('.summary [data-alias="production"]')).to_have_text("production → v1")
        page.get_by_label("Version to promote").select_option("2")

        declined = answer_once(page, accept=False)
        page.get_by_role("button", name="Promote").click()
        expect(page.get_by_label("Version to promote")).to_have_value("2")
        assert declined and "Promote v2 of switch to production?" in declined[0]
        assert served_output(client, "switch") == ("1", X)  # declined: nothing changed

        answer_once(page)
        page.get_by_role("button", name="Promote").click()
        expect(page.locator('.summary [data-alias="production"]')).to_have_text("production → v2")
        assert served_output(client, "switch") == ("2", [x + 100 for x in X])
        expect(page.locator('table.audit tr[data-kind="alias.set"]').first).to_contain_text(
            "production → v2 (was v1)")

        answer_once(page)
        page.get_by_role("button", name="Roll back").click()
        expect(page.locator('.summary [data-alias="production"]')).to_have_text("production → v1")
        assert served_output(client, "switch") == ("1", X)


def test_memory_page_pictures_the_cache_and_its_loads(fleet: Fleet, page: Page) -> None:
    page.goto(f"{fleet.url}/#/model/iris")
    pin = page.locator('table.versions tr[data-version="1"] button')
    expect(pin).to_have_text("pin")
    answer_once(page)
    pin.click()
    expect(pin).to_have_text("pinned · unpin")

    page.get_by_role("link", name="Memory").click()
    with fleet.client() as client:
        cache = client.get("/api/cache").json()
    loads = sum(minute["load"] for minute in cache["per_minute"])
    latest_loads = [e for e in cache["events"][-20:] if e["event"] == "load"]
    expect(page.locator("[data-memory=used]")).to_contain_text("of 1.0 GiB used")
    loaded = page.locator("table.loaded tbody tr")
    expect(loaded).to_have_count(len(cache["loaded"]))
    expect(page.locator('table.loaded tr[data-model="iris"]')).to_contain_text("pinned")
    expect(page.locator("svg.budget rect.segment")).to_have_count(len(cache["loaded"]))
    expect(page.locator("svg.budget rect.pinned")).to_have_count(1)
    bars = 'figure[data-chart="cache-events"] rect.bar[data-series="loads"]'
    expect(page.locator(bars).first).to_be_visible()
    assert sum(point_values(page, bars)) == loads > 0
    expect(page.locator('table.events tr[data-event="load"]')).to_have_count(len(latest_loads))
    with fleet.client() as client:
        (replica,) = client.get("/api/replicas").json()  # this server, holding what it loaded
    row = page.locator(f'table.replicas tr[data-replica="{replica["id"]}"]')
    expect(row).to_contain_text("(this one)")
    expect(row).to_contain_text("iris v1")


def test_findings_page_shows_evidence_and_the_cleanup_dry_run(fleet: Fleet, page: Page) -> None:
    page.goto(f"{fleet.url}/#/findings")
    unhealthy = page.locator('tr[data-model="rooted"][data-code="UNHEALTHY"]')
    expect(unhealthy).to_contain_text("invalid outputs in 75% of 4 requests")
    duplicates = page.locator('tr[data-model="dupe"][data-code="DUPLICATE"]')
    expect(duplicates).to_have_count(2)
    expect(duplicates.first).to_contain_text("same as")
    expect(page.locator('tr[data-model="dupe"][data-version="1"][data-code="SUPERSEDED"]')).to_contain_text(
        "production")

    answer_once(page)
    page.get_by_role("button", name="Run cleanup dry run").click()
    archive = page.locator('table.plan tr[data-action="archive"]')
    expect(archive).to_have_count(1)
    expect(archive).to_contain_text("dupe")
    expect(archive).to_contain_text("SUPERSEDED")
    expect(page.locator("[data-plan=totals]")).to_contain_text("would free")
    with fleet.client() as client:  # a dry run: nothing archived
        assert client.get("/api/models/dupe/versions/1").json()["archived"] is False


def test_the_endpoints_the_pages_read_answer_json_the_cli_can_use(fleet: Fleet) -> None:
    with fleet.client() as client:
        recent = client.get("/api/models/charted/usage/recent", params={"span": "hour"}).json()
        assert (recent["span"], recent["step_seconds"]) == ("hour", 60)
        [charted] = recent["versions"]
        assert [b["requests"] for b in charted["buckets"]] == list(CHARTED_MINUTES.values())
        starts = [datetime.fromisoformat(b["start"]).timestamp() for b in charted["buckets"]]
        assert [t - starts[0] for t in starts] == [0, 60, 120]
        by_hour = client.get("/api/models/charted/usage/recent", params={"span": "day"}).json()
        assert sum(b["requests"] for b in by_hour["versions"][0]["buckets"]) == 9
        wrong = client.get("/api/models/charted/usage/recent", params={"span": "week"})
        assert wrong.status_code == 400 and "'hour' or 'day'" in wrong.json()["error"]

        used = {m["model"]: m for m in client.get("/api/usage/recent").json()["models"]}
        assert used["iris"]["hour"]["requests"] == used["iris"]["day"]["requests"] == 12
        assert used["iris"]["hour"]["errors_by_kind"]["bad_input"] == 2
        assert "dupe" not in used  # never asked for anything
        assert [(v["version"], v["hour"]["requests"], v["day"]["requests"], v["day"]["errors"])
                for v in used["charted"]["versions"]] == [(1, 9, 9, 0)]
        assert used["charted"]["hour"]["requests"] == used["charted"]["day"]["requests"] == 9

        cache = client.get("/api/cache").json()
        assert cache["budget_bytes"] == 1024**3
        assert cache["used_bytes"] == sum(e["bytes"] for e in cache["loaded"]) > 0
        assert {"load"} <= {e["event"] for e in cache["events"]}
        loads = [e for e in cache["events"] if e["event"] == "load"]
        assert sum(m["load"] for m in cache["per_minute"]) == len(loads)  # fewer than the list keeps
        assert all(set(m) == {"start", "load", "evict", "unload", "load_failed"} for m in cache["per_minute"])

        report = client.get("/api/report").json()
        rooted = next(m for m in report["models"] if m["name"] == "rooted")
        assert rooted["versions"][0]["health"]["status"] == "unhealthy"
        assert any("NaN" in r for r in rooted["versions"][0]["health"]["reasons"])


@pytest.mark.parametrize("path", ["/dashboard/index.html", "/dashboard/..%2Fapp.py", "/dashboard/nope.js",
                                  "/dashboard/app.js%0A"])
def test_the_dashboard_serves_none_but_its_own_files(fleet: Fleet, path: str) -> None:
    with fleet.client() as client:
        answer = client.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]


def test_with_api_keys_the_page_asks_for_one_and_keeps_it_in_the_tab(
        page: Page, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "var")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            push(client, "guarded", offset_model(tmp_path / "guarded.onnx", 1.0))
            admin = client.post("/api/keys", json={"name": "ops", "role": "admin"}).json()["key"]
            reader = client.post("/api/keys", json={"name": "viewer", "role": "read"},
                                 headers={"Authorization": f"Bearer {admin}"}).json()["key"]
            assert client.get("/api/models").status_code == 401
            assert client.get("/api/cache").status_code == 401
            html = client.get("/")  # the page and its files hold no data: no key needed
            assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
            assert "default-src 'self'" in html.headers["content-security-policy"]
            script = client.get("/dashboard/app.js")
            assert script.status_code == 200
            assert script.headers["content-type"].startswith("text/javascript")
            assert client.get("/dashboard/missing.js").status_code == 404
        page.clock.install()
        page.goto(f"{server.url}/")
        form = page.locator("#key-form")
        expect(form).to_be_visible()
        expect(page.locator("#key-reason")).to_contain_text("this server needs an API key")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTIFACTS / "api-key-prompt.png")

        page.get_by_role("button", name="Cancel").click()  # cancelled: the page stops asking
        expect(form).to_be_hidden()
        notice = page.locator("#notices #key-needed")
        expect(notice).to_contain_text("needs an API key")
        reads: list[str] = []

        def read(request: Request) -> None:
            if "/api/" in request.url:
                reads.append(request.url)

        page.on("request", read)
        page.clock.run_for(3 * REFRESH_MS)
        # A marker request the page sends now: any read the timers sent went out before it, so
        # its event came first.
        with page.expect_request(lambda r: r.url.endswith("/v2/health/live")):
            page.evaluate("() => fetch('/v2/health/live')")
        expect(form).to_be_hidden()
        assert reads == []
        page.remove_listener("request", read)
        notice.get_by_role("button", name="Change API key").click()
        expect(form).to_be_visible()
        page.get_by_label("Key", exact=True).fill("mm_000000000000_wrong")
        page.get_by_role("button", name="Use this key").click()
        expect(notice).to_be_hidden()  # a key given: the page reads again
        expect(form).to_be_visible()  # a wrong key: asked again
        page.get_by_label("Key", exact=True).fill(reader)
        page.get_by_role("button", name="Use this key").click()
        expect(page.locator('tr[data-model="guarded"]')).to_be_visible()
        expect(form).to_be_hidden()
        kept = page.evaluate("() => [sessionStorage.getItem('model-manager.api-key'), localStorage.length]")
        assert kept == [reader, 0]
        requests = page.locator('tr[data-model="guarded"] [data-column="hourRequests"]')
        expect(requests).to_have_text("0")
        for _ in range(2):
            httpx.post(f"{server.url}/v2/models/guarded/infer", json=x_body(X),
                       headers={"Authorization": f"Bearer {admin}"}).raise_for_status()
        expect(requests).to_have_text("2")  # live: the page reads the API again by itself

        page.goto(f"{server.url}/#/model/guarded")  # a read key may look, not change
        answer_once(page)
        page.locator('table.versions tr[data-version="1"] button').click()
        expect(form).to_be_visible()
        expect(page.locator("#key-reason")).to_contain_text("has role read")
        page.get_by_label("Key", exact=True).fill(admin)
        page.get_by_role("button", name="Use this key").click()
        expect(page.locator('table.versions tr[data-version="1"] button')).to_have_text("pinned · unpin")
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as client:
            assert client.get("/api/models/guarded/versions/1").json()["pinned"] is True
    finally:
        server.stop()
