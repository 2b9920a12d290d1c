"""The dashboard (数字驾驶舱) in a real browser: headless Chromium driven by Selenium signs
in to the hub app served by uvicorn over a PostgreSQL store of generated data, and
finds every national indicator showing the value this test computes itself with
its own SQL (not through ehub.indicators), the charts drawn as SVG, and the
department filter narrowing the charts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import text

from ehub import codelists
from ehub.config import Settings
from ehub.devstack import free_port
from ehub.hub_api import create_app
from ehub.hub_auth import OperatorTokens, new_token
from ehub.store.db import Store
from tests.conftest import need_binary
from tests.ehub.hub_data import populate

#: The seeds' definition of a license type "in use" (more than 20 licenses attached).
TYPES_IN_USE = 20

NEWEST_LICENSES = """
    SELECT l.* FROM licenses l
    WHERE l.version = (SELECT max(x.version) FROM licenses x WHERE x.identifier = l.identifier)
"""
NEWEST_CASES = """
    SELECT c.* FROM case_records c
    WHERE c.version = (SELECT max(x.version) FROM case_records x
                       WHERE x.case_number = c.case_number)
"""


@dataclass
class Served:
    url: str
    store: Store
    token: str

    def one(self, sql: str) -> Any:
        with self.store.engine.connect() as conn:
            return conn.execute(text(sql)).one()

    def all(self, sql: str, **params: Any) -> list[Any]:
        with self.store.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())


@pytest.fixture
def served(pg_url: str, tmp_path: Path) -> Iterator[Served]:
    store = Store(pg_url)
    store.migrate()
    populate(store, seed=29, count=75, days=14)
    token, entry = new_token("ops-dashboard")
    settings = Settings.from_env(home=tmp_path, database_url=pg_url)
    app = create_app(settings, tokens=OperatorTokens.parse(entry), store=store)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", store, token)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.dispose()


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = need_binary("chromium", "chromium")
    driver_bin = need_binary("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,3000", "--lang=zh-CN"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _share(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator * 100:.1f}%" if denominator else "—"


def _expected(s: Served) -> dict[str, tuple[str, int, int | None]]:
    """Each indicator as (shown value, numerator, denominator), from this test's own SQL."""
    licenses = s.one("SELECT count(DISTINCT identifier) FROM licenses")[0]
    sealed = s.one(f"SELECT count(*) FROM ({NEWEST_LICENSES}) n WHERE EXISTS "
                   "(SELECT 1 FROM signatures g WHERE g.license_id = n.id)")[0]  # fmt: skip
    types = s.one("SELECT count(DISTINCT type_code) FROM licenses")[0]
    in_use = s.one("SELECT count(*) FROM (SELECT type_code FROM licenses GROUP BY type_code "
                   f"HAVING count(DISTINCT identifier) > {TYPES_IN_USE}) t")[0]  # fmt: skip
    cases = s.one("SELECT count(DISTINCT case_number) FROM case_records")[0]
    item_linked = s.one(
        f"SELECT count(*) FROM ({NEWEST_CASES}) n WHERE length(n.document->>'SSBM') = 31 "
        "AND left(n.document->>'SSBM', 18) = n.document->>'SSJGDM' "
        "AND coalesce(n.document->>'SXMC', '') <> ''"
    )[0]
    case_linked = s.one(f"SELECT count(*) FROM ({NEWEST_LICENSES}) n WHERE n.document->>'GLBJBH' "
                        "IN (SELECT case_number FROM case_records)")[0]  # fmt: skip
    registered, seals = s.one(
        "SELECT count(*) FILTER (WHERE registration_no IS NOT NULL), count(*) FROM seals"
    )
    return {
        "licenses_aggregated": (str(licenses), licenses, None),
        "licenses_sealed_share": (_share(sealed, licenses), sealed, licenses),
        "license_types_with_licenses": (str(types), types, None),
        "license_types_over_threshold": (str(in_use), in_use, None),
        "cases_aggregated": (str(cases), cases, None),
        "cases_item_linked_share": (_share(item_linked, cases), item_linked, cases),
        "licenses_case_linked_share": (_share(case_linked, licenses), case_linked, licenses),
        "seals_registered_share": (_share(registered, seals), registered, seals),
    }


def _sign_in(driver: Any, s: Served) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(s.url + "/dashboard")
    field = WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "token")))
    field.send_keys("not-the-token")
    driver.find_element(By.ID, "sign-in").click()
    alert = WebDriverWait(driver, 30).until(
        ec.presence_of_element_located((By.CLASS_NAME, "error"))
    )
    assert "令牌无效" in alert.text
    driver.find_element(By.ID, "token").send_keys(s.token)
    driver.find_element(By.ID, "sign-in").click()
    WebDriverWait(driver, 60).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "[data-indicator]"))
    )


def test_dashboard_shows_every_indicator_as_the_store_holds_it(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(browser, served)
    assert "数字驾驶舱" in browser.title
    expected = _expected(served)
    assert expected["licenses_aggregated"][1] > 0 and expected["cases_aggregated"][1] > 0
    shown = {}
    for el in browser.find_elements(By.CSS_SELECTOR, "[data-indicator]"):
        name = el.get_attribute("data-indicator")
        value = el.find_element(By.CLASS_NAME, "kpi-value").text
        denominator = el.get_attribute("data-denominator")
        shown[name] = (value, int(el.get_attribute("data-numerator")),
                       int(denominator) if denominator else None)  # fmt: skip
        assert el.is_displayed() and el.find_element(By.CLASS_NAME, "kpi-label").text
    assert shown == expected

    # charts: drawn as inline SVG with visible bars, one per department / type / reason
    charts = {
        c.get_attribute("data-chart"): c
        for c in browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    }
    assert {"department_extracted", "department_sealed_share", "type_licenses",
            "type_sealed_share", "daily", "quarantine_reasons", "platform_delivered_share",
            "platform_latency_p95", "reconciliation", "office_lag_p95"} <= set(charts)  # fmt: skip
    reasons = {
        codelists.load("reason_codes").entry(code).zh: n
        for code, n in served.all(
            "SELECT reason_code, count(DISTINCT raw_id) FROM quarantine "
            "WHERE created_at >= now() - interval '30 days' "
            "GROUP BY reason_code"
        )
    }
    bars = charts["quarantine_reasons"].find_elements(By.CSS_SELECTOR, "rect.bar")
    assert {b.get_attribute("data-label"): int(float(b.get_attribute("data-value")))
            for b in bars} == reasons  # fmt: skip
    assert all(b.size["width"] > 0 for b in bars)
    delivered = dict(served.all(
        "SELECT destination, count(*) FILTER (WHERE state = 'delivered')::float / count(*) "
        "FROM deliveries WHERE created_at >= now() - interval '30 days' GROUP BY destination"))  # fmt: skip
    plat = {b.get_attribute("data-label"): float(b.get_attribute("data-value"))
            for b in charts["platform_delivered_share"].find_elements(By.CSS_SELECTOR, "rect.bar")}  # fmt: skip
    assert plat == pytest.approx(
        {"省级平台": delivered["provincial"], "全国平台": delivered["national"]}
    )
    points = charts["daily"].find_elements(By.CSS_SELECTOR, "circle[data-series='抽取']")
    extracted_days = served.all(
        "SELECT to_char(extracted_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD'), count(*) "
        "FROM raw_records WHERE extracted_at >= now() - interval '30 days' GROUP BY 1")  # fmt: skip
    got = {p.get_attribute("data-label"): int(float(p.get_attribute("data-value"))) for p in points}
    assert {d: n for d, n in got.items() if n} == dict(extracted_days)
    browser.save_screenshot(str(tmp_path / "dashboard.png"))


def test_the_department_filter_narrows_the_charts(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _sign_in(browser, served)
    dept, extracted = served.all(
        "SELECT s.department, count(*) FROM raw_records r JOIN sources s ON s.id = r.source_id "
        "WHERE s.record_kind = 'license' GROUP BY s.department ORDER BY s.department LIMIT 1")[0]  # fmt: skip
    Select(browser.find_element(By.NAME, "department")).select_by_value(dept)
    Select(browser.find_element(By.NAME, "days")).select_by_value("0")
    from urllib.parse import urlencode

    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    # The filtered page is a new document (a GET of the form): wait for its address and
    # for it to be loaded. Not staleness_of(old page): chromedriver may answer a command
    # on an element of the document being replaced with "unhandled inspector error"
    # (failed once in CI), so errors while the page changes are waited through.
    WebDriverWait(browser, 30, ignored_exceptions=(WebDriverException,)).until(
        lambda d: (
            urlencode({"department": dept}) in d.current_url
            and d.execute_script("return document.readyState") == "complete"
        )
    )
    chart = browser.find_element(By.CSS_SELECTOR, "svg[data-chart='department_extracted']")
    bars = chart.find_elements(By.CSS_SELECTOR, "rect.bar")
    assert [(b.get_attribute("data-label"), b.get_attribute("data-value")) for b in bars] == [
        (dept, str(extracted))
    ]
    types = served.all(
        "SELECT l.type_code, count(DISTINCT l.identifier) FROM licenses l "
        "JOIN sources s ON s.id = l.source_id WHERE s.department = :d GROUP BY l.type_code",
        d=dept,
    )
    names = {t: codelists.load("license_types").entry(t).zh for t, _ in types}
    type_bars = browser.find_elements(By.CSS_SELECTOR, "svg[data-chart='type_licenses'] rect.bar")
    assert {
        b.get_attribute("data-label"): int(b.get_attribute("data-value")) for b in type_bars
    } == {names[t]: n for t, n in types}
    # the national indicators stay province-wide whatever the filter
    total = served.one("SELECT count(DISTINCT identifier) FROM licenses")[0]
    el = browser.find_element(By.CSS_SELECTOR, "[data-indicator='licenses_aggregated'] .kpi-value")
    assert el.text == str(total)
