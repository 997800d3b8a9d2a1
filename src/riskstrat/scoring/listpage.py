"""Looking at the pages riskstrat writes (practice lists, reports) in a headless browser.

Pages are rendered by :mod:`riskstrat.templates`; each is one self-contained file with no network
references, so a browser can open it offline.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["chromium", "find_chromium", "print_pdf"]


def find_chromium() -> str | None:
    """The headless browser used to look at pages (Debian's ``chromium``), or None."""
    import shutil

    return next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


def chromium(page: str | Path, *, width: int = 1280, height: int = 800, screenshot: str | Path | None = None,
             timeout: float = 120) -> str:
    """Open ``page`` in headless Chromium at ``width`` x ``height``: save a PNG, or return the DOM after load.

    Offline and sandboxed from the user's profile (a fresh temporary profile, no background
    networking, sync or component updates).
    """
    import subprocess
    import tempfile

    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="riskstrat-chromium-") as profile:
        args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                f"--user-data-dir={profile}", f"--window-size={width},{height}", "--virtual-time-budget=3000"]
        args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
        done = subprocess.run([*args, Path(page).resolve().as_uri()], capture_output=True, text=True,
                              timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def print_pdf(page: str | Path, pdf: str | Path, *, timeout: float = 120) -> Path:
    """Print ``page`` to ``pdf`` as headless Chromium prints it (the page's own @page size and margins,
    print styles applied, no browser header or footer); returns ``pdf``."""
    import subprocess
    import tempfile

    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="riskstrat-chromium-") as profile:
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                               "--disable-component-update", "--disable-sync", "--no-first-run",
                               f"--user-data-dir={profile}", "--no-pdf-header-footer",
                               f"--print-to-pdf={Path(pdf).resolve()}", Path(page).resolve().as_uri()],
                              capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0 or not Path(pdf).exists():
        raise RuntimeError(f"chromium failed to print ({done.returncode}): {done.stderr.strip()[-500:]}")
    return Path(pdf)
