"""Headless Chromium through Selenium, using Debian's chromium and chromium-driver (no download)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

CHROMIUM = ("chromium", "chromium-browser")
DRIVER = ("chromedriver",)


def _which(names) -> Optional[str]:
    for name in names:
        found = shutil.which(name) or (f"/usr/lib/chromium/{name}" if Path(f"/usr/lib/chromium/{name}").exists() else None)
        if found:
            return found
    return None


def missing() -> Optional[str]:
    """Why the browser tests cannot run here, or None."""
    if _which(CHROMIUM) is None:
        return "Debian's chromium is not installed (apt-get install chromium chromium-driver, or scripts/services.sh)"
    if _which(DRIVER) is None:
        return "Debian's chromium-driver is not installed (apt-get install chromium-driver)"
    return None


def start(download_dir: Optional[Path] = None):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _which(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--lang=zh-CN", "--no-first-run"):
        options.add_argument(arg)
    # Selenium Manager must not fetch a browser or driver: the system's are given explicitly.
    os.environ.setdefault("SE_AVOID_BROWSER_DOWNLOAD", "true")
    service = Service(executable_path=_which(DRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    return driver


def screenshot(driver, directory: Path, name: str) -> Path:
    """The whole page, not only the window."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(1000, min(int(height) + 40, 6000)))
    path = directory / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    return path
