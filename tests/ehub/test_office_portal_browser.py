"""The office portal in a real headless Chromium against a real uvicorn server: a clerk
logs in (a wrong credential shows the error first), filters with the form, downloads CSV
and XLSX through the browser and gets exactly the office's records, and another office's
URL shows the 403 page."""

from __future__ import annotations

import csv
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from openpyxl import load_workbook
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from ehub.office_portal import create_router
from ehub.store.db import Store
from tests.conftest import need_binary
from tests.ehub.test_office_portal import (
    BUSINESS,
    CITY,
    COUNTY,
    SECRET,
    Env,
    check_rows,
    seed,
    stored_at,
    want,
)

FILTERS = {"type": BUSINESS, "from": "2026-03-08", "to": "2026-04-10", "q": "00001"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Env]]:
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.migrate()
    tokens, records = seed(store)
    app = FastAPI()
    app.include_router(create_router(store, SECRET, page_size=5))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", Env(store, tokens, records,
                                              [stored_at(n) for n in range(len(records))])  # fmt: skip
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        store.dispose()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[WebDriver, Path]]:
    chromium = need_binary("chromium", "chromium")
    driver_bin = need_binary("chromedriver", "chromium-driver")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--lang=zh-CN"):  # fmt: skip
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False,
        "download.directory_upgrade": True, "safebrowsing.enabled": False,
    })  # fmt: skip
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    driver.set_page_load_timeout(20)
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": str(downloads)})  # fmt: skip
        yield driver, downloads
    finally:
        driver.quit()


def _wait_download(folder: Path, suffix: str, before: set[Path]) -> Path:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = [p for p in folder.glob(f"*{suffix}") if p not in before]
        if done and not list(folder.glob("*.crdownload")):
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no {suffix} download in {sorted(folder.iterdir())}")


def _table(driver: WebDriver) -> list[dict[str, str]]:
    header = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#records thead th")]
    return [
        dict(zip(header, (td.get_attribute("textContent") or "" for td in
                          tr.find_elements(By.TAG_NAME, "td")), strict=True))
        for tr in driver.find_elements(By.CSS_SELECTOR, "#records tbody tr")
    ]  # fmt: skip


def _login(driver: WebDriver, code: str, credential: str) -> None:
    driver.find_element(By.ID, "code").clear()
    driver.find_element(By.ID, "code").send_keys(code)
    driver.find_element(By.ID, "credential").send_keys(credential)
    driver.find_element(By.ID, "login").click()


def test_a_clerk_logs_in_filters_downloads_and_is_kept_to_the_office(
    server: tuple[str, Env], browser: tuple[WebDriver, Path]
) -> None:
    base, env = server
    driver, downloads = browser
    wait = WebDriverWait(driver, 15)
    records_url = f"{base}/portal/offices/{CITY.code}/records"

    driver.get(records_url)  # not logged in: to the login form
    wait.until(lambda d: "/portal/login" in d.current_url)
    _login(driver, CITY.code, env.tokens[COUNTY.code])  # another office's credential
    error = wait.until(lambda d: d.find_element(By.ID, "error"))
    assert "办公室代码或凭证不正确" in error.text
    _login(driver, CITY.code, env.tokens[CITY.code])
    wait.until(lambda d: d.current_url.startswith(records_url))
    assert CITY.name in driver.find_element(By.TAG_NAME, "header").text

    # the filter form, as a clerk fills it (date inputs are set as the date picker would)
    Select(driver.find_element(By.ID, "f-kind")).select_by_value("license")
    Select(driver.find_element(By.ID, "f-type")).select_by_value(FILTERS["type"])
    for name in ("from", "to"):
        field = driver.find_element(By.ID, f"f-{name}")
        driver.execute_script("arguments[0].value = arguments[1]", field, FILTERS[name])
    driver.find_element(By.ID, "f-q").send_keys(FILTERS["q"])
    driver.find_element(By.ID, "search").click()
    wait.until(lambda d: "type=" in d.current_url)
    wanted = want(env, CITY, "license", **FILTERS)
    assert len(wanted) > 5  # more than one page
    rows: list[dict[str, str]] = []
    for _ in range(20):
        rows += _table(driver)
        nxt = driver.find_elements(By.ID, "next")
        if not nxt:
            break
        nxt[0].click()
        wait.until(lambda d: "after=" in d.current_url)
    check_rows(rows, wanted, "license")

    # downloads, with the filters of the page
    driver.get(records_url + "?" + "&".join(f"{k}={v}" for k, v in FILTERS.items()))
    got: dict[str, list[list[Any]]] = {}
    for fmt in ("csv", "xlsx"):
        before = set(downloads.iterdir())
        driver.find_element(By.ID, f"export-{fmt}").click()
        path = _wait_download(downloads, f".{fmt}", before)
        assert path.name.startswith(f"{CITY.code}-license-")
        if fmt == "csv":
            got[fmt] = list(csv.reader(io.StringIO(path.read_text("utf-8-sig"))))
        else:
            sheet = load_workbook(path, read_only=True).active
            assert sheet is not None
            got[fmt] = [["" if c is None else str(c) for c in r]
                        for r in sheet.iter_rows(values_only=True)]  # fmt: skip
        table = got[fmt]
        check_rows([dict(zip(table[0], r, strict=True)) for r in table[1:]], wanted, "license",
                   exported=True)  # fmt: skip
    assert got["csv"] == got["xlsx"]

    # another office's page
    driver.get(f"{base}/portal/offices/{COUNTY.code}/records")
    assert wait.until(lambda d: d.find_element(By.ID, "title")).text == "无权访问"
    assert COUNTY.name not in driver.page_source

    driver.find_element(By.ID, "logout").click()
    wait.until(lambda d: "/portal/login" in d.current_url)
    driver.get(records_url)
    wait.until(lambda d: "/portal/login" in d.current_url)
