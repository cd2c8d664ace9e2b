"""The demo app in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, which scripts/test installs when missing) driven by Selenium against the
demo served by uvicorn on a free loopback port. Screenshots go under the test's tmp_path."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from authmw.cli._demo_app import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    DEMO_PASSWORD,
    DEMO_USER,
    build_app,
    make_auth,
)

CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 15  # seconds a page may take to show what a step expects (generous: 2 shared cores)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def demo_url() -> Iterator[str]:
    """The demo app (in-memory storage) on a real uvicorn in a thread; its base URL."""
    port = _free_port()
    config = uvicorn.Config(
        build_app(make_auth("memory://")), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped before serving the demo"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browsers() -> Iterator[list[WebDriver]]:
    """A factory list: call ``open_browser`` to add a fresh headless Chromium (own cookies)."""
    if shutil.which("chromium") is None or not Path(CHROMEDRIVER).exists():
        pytest.fail(
            "headless Chromium is missing (Debian packages chromium and chromium-driver): "
            "run scripts/test, which installs it"
        )
    opened: list[WebDriver] = []
    yield opened
    for driver in opened:
        driver.quit()


def open_browser(opened: list[WebDriver]) -> WebDriver:
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,900"):
        options.add_argument(arg)
    options.add_argument("--disable-dev-shm-usage")  # containers have a small /dev/shm
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    opened.append(driver)
    return driver


class Shots:
    """Numbered screenshots under one folder; their paths are printed."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.taken = folder, 0

    def __call__(self, driver: WebDriver, name: str) -> None:
        self.taken += 1
        path = self.folder / f"{self.taken:02d}-{name}.png"
        assert driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
        print(f"screenshot: {path}")


def text(driver: WebDriver) -> str:
    """The page's visible text, read in one script so that a page swap cannot split the read."""
    return str(driver.execute_script("return document.body ? document.body.innerText : ''"))


def wait_for(driver: WebDriver, words: str) -> None:
    """Wait until the page shows ``words`` (a form submits by fetch, then navigates)."""
    # The page may be replaced while it is read (a navigation after a fetch). Chromium then
    # answers with a stale element, a node "that does not belong to the document" (a plain
    # WebDriverException, seen in CI) or a destroyed script context: each means "read again".
    WebDriverWait(driver, WAIT, ignored_exceptions=[WebDriverException]).until(
        lambda d: words in text(d), f"page never showed {words!r}"
    )


def fill(driver: WebDriver, user: str, password: str) -> None:
    driver.find_element(By.ID, "user").clear()
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def log_in(driver: WebDriver, base: str, user: str, password: str) -> None:
    driver.get(f"{base}/login")
    fill(driver, user, password)
    wait_for(driver, f"Logged in as {user}")


def press(driver: WebDriver, label: str, row: str | None = None) -> None:
    """Click the button labelled ``label`` (inside the element with id ``row`` if given)."""
    scope = driver.find_element(By.ID, row) if row else driver
    buttons = [b for b in scope.find_elements(By.TAG_NAME, "button") if b.text == label]
    assert buttons, f"no {label!r} button on {driver.current_url}"
    buttons[0].click()


def test_demo_in_a_browser(demo_url: str, browsers: list[WebDriver], tmp_path: Path) -> None:
    """Sign up, an anonymous cart kept at login, log in (a wrong password shown on the form),
    the principal, the cart, a
    personal API token used over HTTP, a session revoked from a second browser, an admin
    disabling a user, a tampered cookie and log out, in headless Chromium."""
    base, shot = demo_url, Shots(tmp_path)
    alice = open_browser(browsers)

    # Sign up: logged in straight away, the principal on the home page.
    alice.get(f"{base}/signup")
    assert alice.find_element(By.ID, "password").get_attribute("autocomplete") == "new-password"
    fill(alice, "alice", "alice-password-1")
    wait_for(alice, "Logged in as alice")
    assert "alice: your account is ready" in alice.find_element(By.ID, "flash").text
    shot(alice, "signed-up")
    alice.find_element(By.CSS_SELECTOR, "nav form button").click()  # log out
    wait_for(alice, "You are logged out")

    # Logged out, the cart works all the same (an anonymous session), and is kept at login.
    alice.get(f"{base}/")
    press(alice, "Add apple")
    wait_for(alice, "Added apple to the cart")
    assert alice.find_element(By.ID, "cart").text == "apple"
    shot(alice, "anonymous-cart")

    # A wrong password is shown on the login form itself, the user name kept.
    alice.get(f"{base}/login")
    fill(alice, "alice", "not-her-password")
    wait_for(alice, "Wrong user name or password")
    assert alice.find_element(By.ID, "user").get_attribute("value") == "alice"
    assert alice.find_element(By.ID, "password").get_attribute("autocomplete") == (
        "current-password"
    )
    shot(alice, "wrong-password")
    fill(alice, "alice", "alice-password-1")
    wait_for(alice, "Logged in as alice")
    assert alice.find_element(By.ID, "method").text == "session"
    assert alice.find_element(By.ID, "roles").text == "user"
    assert "Session age" in text(alice)
    shot(alice, "principal")

    # The anonymous cart came along at login; the cart survives a reload.
    assert alice.find_element(By.ID, "cart").text == "apple"
    press(alice, "Add coffee")
    wait_for(alice, "Added coffee to the cart")
    press(alice, "Add bread")
    wait_for(alice, "Added bread to the cart")
    alice.get(f"{base}/")
    assert alice.find_element(By.ID, "cart").text == "apple, coffee, bread"
    shot(alice, "cart")

    # A personal API token, then /api/me with it over plain HTTP.
    alice.get(f"{base}/token")
    press(alice, "Issue a personal API token")
    wait_for(alice, "Try it")
    token = alice.find_element(By.ID, "token").text.strip()
    assert f"Bearer {token}" in alice.find_element(By.ID, "curl").text
    shot(alice, "api-token")
    me = httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=WAIT)
    assert me.status_code == 200
    assert me.json()["user"] == "alice" and me.json()["auth_method"] == "bearer"

    # A second browser revokes the first one's session: its next click shows the login page.
    other = open_browser(browsers)
    log_in(other, base, "alice", "alice-password-1")
    other.get(f"{base}/sessions")
    rows = other.find_elements(By.CSS_SELECTOR, "tr[id^=session-]")
    assert len(rows) == 2
    first = next(r for r in rows if "(this one)" not in r.text).get_attribute("id")
    shot(other, "sessions")
    press(other, "Revoke", row=first)
    wait_for(other, "Revoked.")
    alice.find_element(By.LINK_TEXT, "Sessions").click()
    wait_for(alice, "Log in")
    assert alice.current_url.startswith(f"{base}/login")
    shot(alice, "revoked-elsewhere")

    # "Log out everywhere else" spares the browser that asks.
    log_in(alice, base, "alice", "alice-password-1")
    other.get(f"{base}/sessions")
    press(other, "Log out everywhere else")
    wait_for(other, "Logged out everywhere else")
    alice.get(f"{base}/")
    wait_for(alice, "Log in")
    other.get(f"{base}/")
    wait_for(other, "Logged in as alice")

    # An admin disables the user: the user's browser is logged out on its next click.
    admin = open_browser(browsers)
    log_in(admin, base, ADMIN_USER, ADMIN_PASSWORD)
    admin.find_element(By.LINK_TEXT, "Admin").click()
    wait_for(admin, "Users")
    press(admin, "Disable", row="user-alice")
    wait_for(admin, "Disabled alice")
    assert "disabled" in admin.find_element(By.ID, "user-alice").text
    shot(admin, "admin-disabled-alice")
    other.find_element(By.LINK_TEXT, "Home").click()
    wait_for(other, "Log in")
    fill(other, "alice", "alice-password-1")
    wait_for(other, "Wrong user name or password")
    press(admin, "Enable", row="user-alice")
    wait_for(admin, "Enabled alice")

    # A tampered session cookie is no session: the login page, and the cookie goes.
    demo = open_browser(browsers)
    log_in(demo, base, DEMO_USER, DEMO_PASSWORD)
    cookie = demo.get_cookie("authmw_session")
    assert cookie is not None
    value = str(cookie["value"])
    demo.delete_cookie("authmw_session")
    demo.add_cookie(
        {"name": "authmw_session", "value": value[:-2] + ("AA" if value[-2:] != "AA" else "BB")}
    )
    demo.get(f"{base}/sessions")
    wait_for(demo, "Log in")
    assert demo.current_url.startswith(f"{base}/login")
    shot(demo, "tampered-cookie")

    # Log out.
    log_in(demo, base, DEMO_USER, DEMO_PASSWORD)
    demo.find_element(By.CSS_SELECTOR, "nav form button").click()
    wait_for(demo, "You are logged out")
    demo.get(f"{base}/")
    assert "Logged in as" not in text(demo)
    shot(demo, "logged-out")
    assert shot.taken == 11 and len(list(tmp_path.glob("*.png"))) == 11
