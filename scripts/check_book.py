#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium and check what a reader sees.

    scripts/check_book.py [--html-dir _build/html] [--screenshot _build/screenshot.png]

The HTML is served on 127.0.0.1 (http.server in a thread) and each page is opened with
Debian's `chromium` driven by selenium + `chromedriver`. For every page it asserts that

  * MathJax typeset every formula: each `.math` element holds an `mjx-container`, no
    `mjx-merror` is shown, and no `$$` / `\\(` / `\\[` delimiter is left in the text;
  * every `<img>` loaded (`complete && naturalWidth > 0`);
  * no request went to a host other than 127.0.0.1 / localhost (Chrome's performance log,
    i.e. CDP Network events), and no local request failed (404, ...);
  * the browser console has no error;
  * the page follows the house style (scripts/check_style.py): no table with a default 0…n
    index, no line wider than the page, no figure text below 9 pt at its rendered size, no raw
    dict / tuple repr of more than a few lines.

Other hosts are also unresolvable for this browser (--host-resolver-rules), so a remote
asset is both reported and never fetched. A full-page screenshot of every page is saved to
<html-dir>/../screenshots/<page>.png (e.g. _build/screenshots/book__theory_cost.png), and one
page (the first notebook page of the toc unless --screenshot-page is given) also to
_build/screenshot.png.
Exit status 0 when every page passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_style import screenshot_name, style_problems  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
INTERNAL_SCHEMES = {"data", "blob", "about", "chrome", "chrome-extension", "devtools"}
IGNORED_LOCAL_FAILURES = ("/favicon.ico",)  # Chrome asks for it on its own
# Console errors that are not faults of the book: pydata-sphinx-theme logs this with
# console.error on a browser's first visit (no light/dark mode saved yet).
IGNORED_CONSOLE_ERRORS = ("favicon.ico", "Got invalid theme mode")

# Runs in the page: waits for MathJax and the images, then reports what it sees.
PAGE_PROBE = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const timeout = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const mathElems = Array.from(document.querySelectorAll('.math'));
  const report = {mathjaxLoaded: false, mathjaxError: null};
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    report.mathjaxLoaded = true;
    try {
      // Resolves once the initial typesetting is done (calling typesetPromise() again
      // would typeset a second copy).
      await Promise.race([window.MathJax.startup.promise, timeout(30000)]);
    } catch (e) { report.mathjaxError = String(e); }
  } else if (mathElems.length) {
    // MathJax loads deferred: give it time to arrive before calling it missing.
    for (let i = 0; i < 100 && !(window.MathJax && window.MathJax.startup
         && window.MathJax.startup.promise); i++) { await timeout(100); }
    if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
      report.mathjaxLoaded = true;
      await Promise.race([window.MathJax.startup.promise, timeout(30000)]);
    }
  }
  const imgs = Array.from(document.images);
  imgs.forEach((img) => { img.loading = 'eager'; });
  await Promise.race([
    Promise.all(imgs.map((img) => img.complete ? null : new Promise((resolve) => {
      img.addEventListener('load', resolve); img.addEventListener('error', resolve);
    }))),
    timeout(15000),
  ]);
  const clip = (s) => (s || '').replace(/\s+/g, ' ').trim().slice(0, 120);
  // Text outside code that still carries TeX delimiters was not typeset.
  const body = document.querySelector('main') || document.body;
  const clone = body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container, .highlight, textarea')
       .forEach((n) => n.remove());
  const text = clone.textContent || '';
  const leftovers = [];
  for (const delim of ['$$', '\\(', '\\[', '\\begin{']) {
    const at = text.indexOf(delim);
    if (at >= 0) leftovers.push(clip(text.slice(Math.max(0, at - 40), at + 80)));
  }
  Object.assign(report, {
    title: document.title,
    mathCount: mathElems.length,
    mathUntypeset: mathElems.filter((m) => !m.querySelector('mjx-container')).map((m) => clip(m.textContent)),
    mjxCount: document.querySelectorAll('mjx-container').length,
    mjxErrors: Array.from(document.querySelectorAll('mjx-merror')).map((m) => clip(m.getAttribute('data-mjx-error') || m.textContent)),
    texLeftovers: leftovers,
    imgCount: imgs.length,
    badImages: imgs.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.currentSrc || i.src),
  });
  return report;
})().then(done, (e) => done({probeError: String(e)}));
"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):  # keep the test output readable
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def find_binary(env: str, *candidates: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    for name in candidates:
        path = shutil.which(name) or (name if Path(name).is_file() else None)
        if path:
            return path
    return None


def start_browser(width: int, height: int):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        sys.exit("check_book: selenium is not installed (run `make setup`)")
    chromium = find_binary("CHROMIUM", "/usr/bin/chromium", "chromium")
    driver_bin = find_binary("CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver")
    if not chromium or not driver_bin:
        sys.exit("check_book: chromium / chromedriver not found "
                 "(Debian: apt-get install -y chromium chromium-driver; scripts/test.sh does it)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        f"--window-size={width},{height}", "--hide-scrollbars", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
        # Anything but the local server is unresolvable: a remote asset is reported (from
        # the performance log) but never fetched.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = Service(executable_path=driver_bin)
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(90)
    return driver


def network_events(driver) -> tuple[list[str], list[str]]:
    """(urls requested, local failures) since the last call, from Chrome's performance log."""
    urls, failures, by_id = [], [], {}
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            by_id[params["requestId"]] = url
            urls.append(url)
        elif method == "Network.webSocketCreated":
            urls.append(params.get("url", ""))
        elif method == "Network.responseReceived":
            resp = params["response"]
            if resp.get("status", 200) >= 400 and not resp["url"].endswith(IGNORED_LOCAL_FAILURES):
                failures.append(f"HTTP {resp['status']} {resp['url']}")
        elif method == "Network.loadingFailed":
            url = by_id.get(params["requestId"], "?")
            if is_local(url) and not url.endswith(IGNORED_LOCAL_FAILURES) and not params.get("canceled"):
                failures.append(f"{params.get('errorText')} {url}")
    return urls, failures


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in INTERNAL_SCHEMES or not parts.scheme:
        return True
    return parts.hostname in LOCAL_HOSTS


def console_errors(driver) -> list[str]:
    errors = []
    for entry in driver.get_log("browser"):
        message = entry.get("message", "")
        if entry.get("level") == "SEVERE" and not any(s in message for s in IGNORED_CONSOLE_ERRORS):
            errors.append(entry["message"][:300])
    return errors


def pages_to_check(html_dir: Path) -> list[Path]:
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        relparts = path.relative_to(html_dir).parts
        if relparts[0] in ("_static", "_sources", "_images", "_downloads"):
            continue
        pages.append(path)
    return pages


def default_screenshot_page(html_dir: Path) -> str:
    """The first notebook page of the toc (the richest page), else the root page."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from build_book import toc_files, toc_notebooks

        notebooks = toc_notebooks()
        for entry in ([f"book/{n}" for n in notebooks] + toc_files()):
            if (html_dir / f"{entry}.html").is_file():
                return f"{entry}.html"
    except Exception:
        pass
    return "index.html"


def check_page(driver, base: str, page: str, html_dir: Path) -> tuple[list[str], str]:
    network_events(driver)  # drop what earlier pages left in the log
    console_errors(driver)
    driver.get(f"{base}/{page}")
    report = driver.execute_async_script(PAGE_PROBE)
    time.sleep(0.3)  # late requests (fonts) land in the log
    urls, local_failures = network_events(driver)
    problems = []
    if report.get("probeError"):
        problems.append(f"page probe failed: {report['probeError']}")
        return problems, ""
    if report["mathCount"] and not report["mathjaxLoaded"]:
        problems.append(f"{report['mathCount']} formula(s) but MathJax did not load")
    for formula in report["mathUntypeset"]:
        problems.append(f"formula not typeset by MathJax: {formula!r}")
    for error in report["mjxErrors"]:
        problems.append(f"MathJax error: {error!r}")
    for text in report["texLeftovers"]:
        problems.append(f"TeX left as text (math not recognised by the parser?): {text!r}")
    if report.get("mathjaxError"):
        problems.append(f"MathJax failed: {report['mathjaxError']}")
    for src in report["badImages"]:
        problems.append(f"image did not load: {src}")
    for url in urls:
        if not is_local(url):
            problems.append(f"request to another host: {url}")
    for failure in local_failures:
        problems.append(f"local request failed: {failure}")
    for error in console_errors(driver):
        problems.append(f"console error: {error}")
    problems += style_problems(driver, html_dir)
    summary = (f"{report['mathCount']} formula(s), {report['mjxCount']} typeset, "
               f"{report['imgCount']} image(s), {len(urls)} request(s)")
    return problems, summary


def save_full_page_screenshot(driver, path: Path, width: int, max_height: int = 16000) -> None:
    """The whole page (up to max_height CSS pixels): the window is stretched to fit it."""
    old = driver.get_window_size()
    height = driver.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    # the window's outer size includes a little browser chrome even when headless
    chrome = old["height"] - driver.execute_script("return window.innerHeight")
    driver.set_window_size(width, min(int(height), max_height) + chrome)
    time.sleep(0.5)  # let the layout settle
    driver.save_screenshot(str(path))
    driver.set_window_size(old["width"], old["height"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html-dir", type=Path, default=ROOT / "_build" / "html")
    ap.add_argument("--screenshot", type=Path, default=ROOT / "_build" / "screenshot.png")
    ap.add_argument("--screenshot-page", help="page to photograph, relative to --html-dir")
    ap.add_argument("--screenshots-dir", type=Path,
                    help="where every page's screenshot goes (default: <html-dir>/../screenshots)")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1600)
    args = ap.parse_args(argv)

    html_dir = args.html_dir.resolve()
    pages = pages_to_check(html_dir)
    if not pages:
        print(f"check_book: no HTML pages under {html_dir} (build the book first)", file=sys.stderr)
        return 1
    shot_page = args.screenshot_page or default_screenshot_page(html_dir)
    shots = (args.screenshots_dir or html_dir.parent / "screenshots").resolve()
    if shots.exists():
        shutil.rmtree(shots)  # no screenshot of an earlier build may survive

    t0 = time.perf_counter()
    server, base = serve(html_dir)
    driver = start_browser(args.width, args.height)
    failed: dict[str, list[str]] = {}
    try:
        for path in pages:
            page = path.relative_to(html_dir).as_posix()
            problems, summary = check_page(driver, base, page, html_dir)
            if problems:
                failed[page] = problems
                print(f"FAIL {page}: {summary}", flush=True)
                for problem in problems:
                    print(f"     - {problem}", flush=True)
            else:
                print(f"ok   {page}: {summary}", flush=True)
            shots.mkdir(parents=True, exist_ok=True)
            save_full_page_screenshot(driver, shots / screenshot_name(page), args.width)
            if page == shot_page:
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                save_full_page_screenshot(driver, args.screenshot, args.width)
                print(f"     screenshot -> {args.screenshot}", flush=True)
    finally:
        driver.quit()
        server.shutdown()
    n_ok = len(pages) - len(failed)
    print(f"check_book: {n_ok} passed, {len(failed)} failed "
          f"({len(pages)} pages in {time.perf_counter() - t0:.1f} s); screenshots in {shots}",
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
