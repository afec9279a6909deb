"""Helpers for the Playwright tests: sign in, keep screenshots."""

import os
from pathlib import Path

from playwright.sync_api import Page, expect


def screenshot(page: Page, name: str) -> None:
    """Save a full-page screenshot when SCREENSHOT_DIR is set."""
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def log_in(page: Page, base_url: str, email: str) -> None:
    """Sign in through the login form and land on the drafts page."""
    page.goto(f"{base_url}/login")
    page.get_by_label("E-Mail").fill(email)
    page.get_by_label("Passwort").fill("geheim-123")
    page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_role("heading", name="Entwürfe", exact=True)).to_be_visible()
