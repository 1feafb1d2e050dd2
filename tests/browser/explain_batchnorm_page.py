#!/usr/bin/python3
"""The page of `npdl explain batchnorm --format html`, in headless Chromium.

Makes the page and the JSON with the built program, opens the page from
disk, walks every step forward (the Next button and the right arrow, in
turn) and back (the left arrow), and checks at each step that what the page
shows is what the JSON says: the title, the highlighted vertices and edges,
the numbers of every table, the formula, the links to earlier steps. Also:
the URL fragment follows the step and reloading #step-N opens step N;
nothing overflows the window horizontally; no console error; no request
other than for the file itself. Saves a screenshot of one step and prints
how many steps it walked and how many checks it made.

Usage: explain_batchnorm_page.py NPDL_PROGRAM OUTPUT_FOLDER [NPDL_OPTION ...]
(options such as --order 2 go to npdl explain batchnorm)
Needs Debian's python3-selenium, chromium and chromium-driver
(scripts/install-deps.sh installs them); fails when they are missing.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1280, 800
SCREENSHOT_STEP = 36  # a derivation step: formula, op, numbers, links


class Checks:
    """Counts checks; collects failures instead of stopping at the first."""

    def __init__(self):
        self.walked = self.reloaded = 0  # steps, set by the walk
        self.made = 0
        self.failures = []

    def equal(self, what, shown, expected):
        self.made += 1
        if shown != expected:
            self.failures.append(f"{what}: page shows {shown!r}, expected {expected!r}")

    def true(self, what, condition, detail=""):
        self.made += 1
        if not condition:
            self.failures.append(f"{what}{': ' + detail if detail else ''}")


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def run_npdl(program, *args):
    result = subprocess.run([program, "explain", "batchnorm", *args],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        fail(f"npdl explain batchnorm {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result.stdout


def start_browser(profile):
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            fail(f"{path} is missing: install the Debian package {package} (scripts/install-deps.sh)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        fail("Selenium is missing: install the Debian package python3-selenium "
             "(scripts/install-deps.sh) and run this with /usr/bin/python3")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--window-size={WIDTH},{HEIGHT}",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


# Everything the checks read from the page, in one round trip per step.
PAGE_STATE = """
const article = document.getElementById('step');
const ids = (selector) => [...document.querySelectorAll(selector)].map((e) => e.id).sort();
const svg = document.querySelector('#graph svg').getBoundingClientRect();
return {
  step: Number(article.dataset.step),
  hash: location.hash,
  counter: document.getElementById('counter').textContent,
  title: article.querySelector('h3').textContent,
  vertices: ids('#graph .node.hl'),
  edges: ids('#graph .edge.hl'),
  tensors: [...article.querySelectorAll('.tensor')].map((t) => ({
    label: t.dataset.label,
    cells: [...t.querySelectorAll('td')].map((td) => td.textContent),
    summary: (t.querySelector('.summary') || {}).textContent || null,
  })),
  formula: !!article.querySelector('.formula math'),
  op: (article.querySelector('.op code') || {}).textContent || null,
  uses: [...article.querySelectorAll('.uses a')].map((a) => a.getAttribute('href')),
  comparison: [...article.querySelectorAll('table.comparison tr')].slice(1)
    .map((tr) => [...tr.children].map((td) => td.textContent)),
  remark: (article.querySelector('.remark') || {}).textContent || null,
  pageWidth: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
  articleOverflow: article.scrollWidth - article.clientWidth,
  windowWidth: window.innerWidth,
  windowHeight: window.innerHeight,
  svgRight: svg.right, svgBottom: svg.bottom,
};
"""


def same_number(shown, expected):
    """The page shows 5 significant digits."""
    if expected is None:
        return shown == "nan"
    value = float(shown)
    return math.isclose(value, expected, rel_tol=1e-4, abs_tol=1e-300) or value == expected


def check_numbers(checks, where, cells, expected):
    checks.equal(f"{where}: count of numbers", len(cells), len(expected))
    for i, (shown, value) in enumerate(zip(cells, expected)):
        checks.true(f"{where}: number {i}", same_number(shown, value), f"{shown} vs {value}")


def check_step(checks, state, step, data):
    n = step["number"]
    where = f"step {n}"
    checks.equal(f"{where}: step shown", state["step"], n)
    checks.equal(f"{where}: URL fragment", state["hash"], f"#step-{n}")
    checks.equal(f"{where}: counter", state["counter"], f"Step {n} of {len(data['steps'])}")
    checks.equal(f"{where}: title", state["title"], step["title"])
    checks.equal(f"{where}: highlighted vertices", state["vertices"], sorted(step["vertices"]))
    checks.equal(f"{where}: highlighted edges", state["edges"], sorted(step["edges"]))
    checks.equal(f"{where}: formula shown", state["formula"], bool(step["mathml"]))
    checks.equal(f"{where}: op", state["op"], step["op"]["name"] if step["op"] else None)
    checks.equal(f"{where}: links", state["uses"], [f"#step-{u}" for u in step["uses"]])
    checks.equal(f"{where}: remark", state["remark"], step["remark"] or None)
    checks.equal(f"{where}: tables", [t["label"] for t in state["tensors"]],
                 [t["label"] for t in step["tensors"]])
    for shown, tensor in zip(state["tensors"], step["tensors"]):
        numbers = tensor["numbers"]
        if numbers is None:
            checks.equal(f"{where}, {tensor['label']}: no numbers", shown["cells"], [])
        elif "summary" in numbers:
            checks.equal(f"{where}, {tensor['label']}: summary", shown["summary"], numbers["summary"])
        else:
            check_numbers(checks, f"{where}, {tensor['label']}", shown["cells"], numbers["values"])
    if step["kind"] == "comparison":
        rows = data["comparison"]["rows"]
        checks.equal(f"{where}: comparison rows", len(state["comparison"]), len(rows))
        for shown, row in zip(state["comparison"], rows):
            checks.equal(f"{where}: comparison names", shown[:2], [row["gradient"], row["pair"]])
            check_numbers(checks, f"{where}: {row['gradient']} {row['pair']}", shown[2:4],
                          [row["max_abs"], row["max_rel"]])
            checks.equal(f"{where}: verdict of {row['gradient']} {row['pair']}", shown[4],
                         row["verdict"])
    checks.true(f"{where}: page wider than the window",
                state["pageWidth"] <= state["windowWidth"],
                f"{state['pageWidth']} > {state['windowWidth']}")
    checks.true(f"{where}: step panel overflows sideways", state["articleOverflow"] <= 0,
                f"by {state['articleOverflow']} px")
    checks.true(f"{where}: graph cut off",
                state["svgRight"] <= state["windowWidth"] + 0.5
                and state["svgBottom"] <= state["windowHeight"] + 0.5,
                f"right {state['svgRight']}, bottom {state['svgBottom']}")


def wait_for_step(driver, number):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        state = driver.execute_script(PAGE_STATE)
        if state["step"] == number:
            return state
        time.sleep(0.005)
    return driver.execute_script(PAGE_STATE)


def walk(driver, data, checks, url):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def press(key):  # to the page, as the user types it
        ActionChains(driver).send_keys(key).perform()

    steps = data["steps"]
    walked = 1
    driver.get(url)
    check_step(checks, wait_for_step(driver, 1), steps[0], data)
    next_button = driver.find_element(By.ID, "next")
    for step in steps[1:]:  # forward: the button and the right arrow in turn
        if step["number"] % 2:
            press(Keys.ARROW_RIGHT)
        else:
            ActionChains(driver).click(next_button).perform()
        check_step(checks, wait_for_step(driver, step["number"]), step, data)
        walked += 1
    press(Keys.ARROW_RIGHT)  # past the last step: stays
    check_step(checks, wait_for_step(driver, len(steps)), steps[-1], data)
    for step in reversed(steps[:-1]):  # back: the left arrow
        press(Keys.ARROW_LEFT)
        check_step(checks, wait_for_step(driver, step["number"]), step, data)
        walked += 1
    return walked


def reload_and_follow_links(driver, data, checks, url):
    """Reloading #step-N opens step N; a link to an earlier step opens it.
    Every fourth step, the last, and every derivation step (where the links
    to the substituted steps are); returns how many were reloaded."""
    from selenium.webdriver.common.by import By

    steps = data["steps"]
    chosen = [s for s in steps
              if s["number"] % 4 == 1 or s["number"] == len(steps) or s["kind"] == "derivation"]
    for step in chosen:
        driver.get(f"{url}#step-{step['number']}")
        driver.refresh()
        check_step(checks, wait_for_step(driver, step["number"]), step, data)
        if step["uses"]:
            links = driver.find_elements(By.CSS_SELECTOR, ".uses a")
            links[-1].click()
            target = step["uses"][-1]
            check_step(checks, wait_for_step(driver, target), steps[target - 1], data)
    return len(chosen)


def check_hover_titles(driver, data, checks):
    titles = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#graph .node')]"
        ".map((g) => [g.id, g.querySelector('title').textContent]));")
    for vertex in data["graph"]["vertices"]:
        title = titles.get(vertex["id"], "")
        checks.true(f"hover title of {vertex['id']}",
                    title.startswith(vertex["name"]) and "\nvalue " in title, repr(title))


def check_self_contained(driver, checks):
    """The page loaded no resource and made no request but for its own file
    (the browser's own chrome:// pages, such as the first tab's, aside)."""
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map((r) => r.name);")
    checks.equal("resources the page loaded", resources, [])
    by_page, network = [], []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.requestWillBeSent":
            continue
        params = message["params"]
        if params.get("documentURL", "").startswith("file://"):
            by_page.append(params["request"]["url"])
        if not params["request"]["url"].startswith(("file:", "chrome:", "data:")):
            network.append(params["request"]["url"])
    checks.true("the page was requested", bool(by_page))
    checks.equal("requests of the page for other than its file",
                 [r for r in by_page if not r.startswith("file://")], [])
    checks.equal("requests to the network", network, [])


def main():
    if len(sys.argv) < 3:
        fail("usage: explain_batchnorm_page.py NPDL_PROGRAM OUTPUT_FOLDER [NPDL_OPTION ...]")
    program, folder, options = sys.argv[1], sys.argv[2], sys.argv[3:]
    started = time.monotonic()
    os.makedirs(folder, exist_ok=True)
    name = "-".join(["batchnorm"] + [o.lstrip("-") for o in options])  # batchnorm-order-2
    page = os.path.abspath(os.path.join(folder, name + ".html"))
    data = json.loads(run_npdl(program, *options, "--format", "json"))
    run_npdl(program, *options, "--format", "html", "-o", page)
    url = "file://" + page

    checks = Checks()
    # A fresh profile, removed when the browser has quit.
    profile = tempfile.mkdtemp(prefix="npdl-chromium-")
    try:
        run_in_browser(profile, url, data, checks, folder, name)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    report(page, data, checks, started, os.path.join(folder, name + "-page.png"))


def run_in_browser(profile, url, data, checks, folder, name):
    driver = start_browser(profile)
    try:
        walked = walk(driver, data, checks, url)
        reloaded = reload_and_follow_links(driver, data, checks, url)
        check_hover_titles(driver, data, checks)
        check_self_contained(driver, checks)
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        checks.equal("console errors and warnings", errors, [])
        # The screenshot of one step, with the page's viewport 1280 x 800.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        driver.get(f"{url}#step-{SCREENSHOT_STEP}")
        driver.refresh()
        state = wait_for_step(driver, SCREENSHOT_STEP)
        check_step(checks, state, data["steps"][SCREENSHOT_STEP - 1], data)
        checks.equal("viewport of the screenshot", [state["windowWidth"], state["windowHeight"]],
                     [WIDTH, HEIGHT])
        screenshot = os.path.join(folder, name + "-page.png")
        checks.true("screenshot saved", driver.save_screenshot(screenshot))
        checks.walked, checks.reloaded = walked, reloaded
    finally:
        driver.quit()


def report(page, data, checks, started, screenshot):
    print(f"page {page}: {os.path.getsize(page)} bytes, {len(data['steps'])} steps")
    print(f"steps walked: {checks.walked} (and {checks.reloaded} reloaded), checks made: "
          f"{checks.made}, failed: {len(checks.failures)}, {time.monotonic() - started:.1f} s")
    print(f"screenshot: {screenshot}")
    for failure in checks.failures[:50]:
        print(f"FAIL: {failure}", file=sys.stderr)
    sys.exit(1 if checks.failures else 0)


if __name__ == "__main__":
    main()
