#!/usr/bin/env python3
"""`pythia dashboard` end to end in headless Chromium.

Starts a redis-server on a free loopback port, seeds a queue with messages and dead letters
(one body is `<script>alert(1)</script>`) and a reliable list with a live consumer, starts the
dashboard on a free port, and drives it with selenium through the system chromedriver: the
overview's counts and charts, live refresh without a reload, the queue page's consumers, the
dead-letter page (the script body shown as text, no alert), a replay through the confirmation
page, a cancelled delete, the pause button, the token login, and no console errors (a CSP violation is one).

    python3 pythia-cli/tests/browser/test_dashboard.py target/release/pythia [--screenshots DIR]

Needs: redis-server, chromium and chromium-driver (Debian packages), selenium (pip). Prints one
line per check and `N passed, M failed`; exits 1 when a check failed.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

SCRIPT_BODY = "<script>alert(1)</script>"
WAIT = 15


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, fn):
        """Runs fn(); a falsy result or an exception fails the check."""
        started = time.monotonic()
        try:
            ok = fn()
            detail = "" if ok in (True, None) else f" ({ok!r})"
            ok = ok is None or bool(ok)
        except Exception as e:  # noqa: BLE001 - any failure is a failed check
            ok, detail = False, f" ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        took = time.monotonic() - started
        if ok:
            self.passed += 1
            print(f"PASS {name} [{took:.1f}s]", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}{detail} [{took:.1f}s]", flush=True)
        return ok


class Env:
    """redis-server, the dashboard and the worker processes of one run."""

    def __init__(self, binary):
        self.binary = os.path.abspath(binary)
        self.dir = tempfile.mkdtemp(prefix="pythia-browser-")
        self.procs = []
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}"

    def start_redis(self):
        p = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.redis_port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def redis(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port), *args],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def pythia(self, *args):
        env = {k: v for k, v in os.environ.items()
               if k not in ("REDIS_URL", "PYTHIA_QUEUE", "PYTHIA_BROKER", "PYTHIA_DASHBOARD_TOKEN")}
        return subprocess.run([self.binary, *args, "--redis-url", self.redis_url],
                              check=True, capture_output=True, text=True, env=env, timeout=60)

    def spawn(self, *args, env=None):
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("REDIS_URL", "PYTHIA_QUEUE", "PYTHIA_DASHBOARD_TOKEN")}
        full_env.update(env or {})
        p = subprocess.Popen([self.binary, *args, "--redis-url", self.redis_url],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=full_env)
        self.procs.append(p)
        return p

    def dashboard(self, *extra, env=None):
        """Starts a dashboard on a free port; returns its base URL."""
        p = self.spawn("dashboard", "--addr", "127.0.0.1:0", "--interval", "1s", *extra, env=env)
        line = p.stdout.readline()
        if "serving http://" not in line:
            raise RuntimeError(f"dashboard did not start: {line!r}")
        return line.split("serving ", 1)[1].split()[0].rstrip("/")

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def get_json(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def browser(user_data_dir):
    opts = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", f"--user-data-dir={user_data_dir}", "--window-size=1400,1000"]:
        opts.add_argument(a)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def wait_for(driver, fn, what, timeout=WAIT):
    # An element found while a form's POST navigates away goes stale: look again.
    try:
        return WebDriverWait(
            driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
        ).until(lambda d: fn(d))
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


def cell(driver, queue, field):
    for row in driver.find_elements(By.CSS_SELECTOR, "#queues tbody tr"):
        if row.get_attribute("data-queue") == queue:
            return row.find_element(By.CSS_SELECTOR, f'[data-f="{field}"]').text
    return None


def no_alert(driver):
    try:
        text = driver.switch_to.alert.text
        return f"an alert fired: {text!r}"
    except NoAlertPresentException:
        return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary", help="the pythia binary (target/release/pythia or target/debug/pythia)")
    ap.add_argument("--screenshots", help="save overview, queue and dead-letter page screenshots here")
    args = ap.parse_args()

    checks = Checks()
    env = Env(args.binary)
    driver = None
    profile = tempfile.mkdtemp(prefix="pythia-chromium-")
    shots = args.screenshots
    if shots:
        os.makedirs(shots, exist_ok=True)
    try:
        env.start_redis()
        # emails: 3 dead letters (one a script), then 7 waiting.
        env.pythia("produce", "--queue", "emails", "hello", SCRIPT_BODY, '{"to": "a@example.com"}')
        env.pythia("run", "--queue", "emails", "--exec", "exit 65", "--burst", "--metrics-addr", "off")
        env.pythia("produce", "--queue", "emails", "--count", "7", "--size", "40")
        # jobs: 20 messages, a live consumer holding 2 of them.
        env.pythia("produce", "--queue", "jobs", "--count", "20", "--size", "40")
        env.spawn("run", "--queue", "jobs", "--exec", "sleep 120", "--concurrency", "2",
                  "--batch-size", "2", "--timeout", "0", "--metrics-addr", "off",
                  env={"PYTHIA_CONSUMER_NAME": "billing-worker"})
        # events: a stream whose group `billing` dead-letters about a quarter of 40 entries.
        env.pythia("produce", "--broker", "stream", "--queue", "events", "--count", "40",
                   "--size", "40")
        env.pythia("run", "--broker", "stream", "--queue", "events", "--group", "billing",
                   "--group-start", "beginning", "--exec",
                   'case "$PYTHIA_MESSAGE_ID" in *[0-3]) exit 65;; esac', "--burst",
                   "--metrics-addr", "off")
        base = env.dashboard()
        driver = browser(profile)

        def overview_counts():
            driver.get(base + "/")
            wait_for(driver, lambda d: cell(d, "emails", "depth") == "7"
                     and cell(d, "emails", "dead_letters") == "3", "emails: depth 7, 3 dead letters")
            wait_for(driver, lambda d: cell(d, "jobs", "in_flight") == "2", "jobs: 2 in flight")
            return cell(driver, "jobs", "depth") == "18" or f"jobs depth {cell(driver, 'jobs', 'depth')}"
        checks.check("overview lists emails (depth 7, 3 dead letters) and jobs (18 + 2 in flight)",
                     overview_counts)

        def charts_drawn():
            wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-depth polyline")
                     and d.find_elements(By.CSS_SELECTOR, "#chart-dlq polyline")
                     and d.find_elements(By.CSS_SELECTOR, "svg.spark polyline"), "charts drawn")
            return True
        checks.check("overview draws the depth and dead-letter charts and sparklines", charts_drawn)

        def live_refresh():
            marker = driver.execute_script("window.__noReload = 1; return window.__noReload;")
            env.redis("LPUSH", "emails", "x", "y", "z", "w", "v")
            wait_for(driver, lambda d: cell(d, "emails", "depth") == "12", "depth 12 without reload")
            return driver.execute_script("return window.__noReload;") == marker or "page was reloaded"
        checks.check("overview refreshes live (5 pushed: depth 7 -> 12, no reload)", live_refresh)
        checks.check("overview shows the stream events", lambda: cell(driver, "events", "broker") == "stream")
        if shots:
            # Some traffic for the charts: jobs grows, events gets entries it does not read.
            for i in range(8):
                env.redis("LPUSH", "jobs", *[f"job-{i}-{k}" for k in range(3 + i % 3)])
                env.redis("XADD", "events", "*", "body", f"event-{i}")
                time.sleep(1)
            driver.save_screenshot(os.path.join(shots, "overview.png"))

        def queue_page():
            driver.get(base + "/queues/jobs")
            wait_for(driver, lambda d: "billing-worker" in d.find_element(By.ID, "detail").text,
                     "the consumer billing-worker")
            text = driver.find_element(By.ID, "detail").text
            row = [r for r in text.splitlines() if "billing-worker" in r][0]
            return ("alive" in row and " 2 " in f" {row} ") or row
        checks.check("queue page shows the consumer, 2 in flight, heartbeat alive", queue_page)

        def queue_charts():
            wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-depth polyline"),
                     "queue charts")
            depth = get_json(base + "/api/queues/jobs")["depth"]
            shown = driver.find_element(By.CSS_SELECTOR, '[data-f="depth"]').text
            return shown == str(depth) or f"page {shown}, API {depth}"
        checks.check("queue page draws its charts and shows the depth the API gives", queue_charts)
        if shots:
            driver.save_screenshot(os.path.join(shots, "queue.png"))

        def stream_page():
            driver.get(base + "/queues/events")
            text = wait_for(driver, lambda d: "Group billing" in d.find_element(By.ID, "detail").text
                            and d.find_element(By.ID, "detail").text, "the group billing")
            return "pending" in text or text
        checks.check("stream page shows its consumer group", stream_page)

        def dlq_page():
            driver.get(base + "/queues/emails/dlq")
            rows = driver.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
            return len(rows) == 3 or f"{len(rows)} rows"
        checks.check("dead-letter page lists the 3 dead letters", dlq_page)

        def script_is_text():
            bodies = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "code.body")]
            if SCRIPT_BODY not in bodies:
                return f"bodies shown: {bodies}"
            scripts = driver.find_elements(By.XPATH, "//script[contains(., 'alert')]")
            if scripts:
                return "a <script> element from the body is in the page"
            return no_alert(driver)
        checks.check("a <script> body is shown as text, and no alert fired", script_is_text)
        if shots:
            driver.save_screenshot(os.path.join(shots, "dead-letters.png"))

        def replay_one():
            row = [r for r in driver.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
                   if "hello" in r.text][0]
            row.find_element(By.LINK_TEXT, "Replay…").click()
            question = wait_for(driver, lambda d: d.find_element(By.ID, "confirm-question").text,
                                "the confirmation page")
            if "Replay dead letter" not in question:
                return f"question: {question!r}"
            driver.find_element(By.ID, "confirm").click()
            notice = wait_for(driver, lambda d: d.find_elements(By.ID, "notice")
                              and d.find_element(By.ID, "notice").text, "the notice")
            return "Replayed 1 dead letter" in notice or notice
        checks.check("replay of one dead letter through the confirmation page", replay_one)

        def back_in_queue():
            doc = get_json(base + "/api/queues/emails")
            llen = env.redis("LLEN", "emails")
            last = env.redis("LINDEX", "emails", "0")
            ok = doc["depth"] == 13 and doc["dead_letters"] == 2 and llen == "13" and "hello" in last
            return ok or f"depth {doc['depth']}, dead letters {doc['dead_letters']}, LLEN {llen}"
        checks.check("the replayed message is back in the queue (API and redis-cli: 13, 2 dead)",
                     back_in_queue)

        def cancelled_delete():
            driver.get(base + "/queues/emails/dlq")
            driver.find_element(By.LINK_TEXT, "Delete all 2…").click()
            wait_for(driver, lambda d: d.find_elements(By.ID, "cancel"), "the confirmation page")
            driver.find_element(By.ID, "cancel").click()
            wait_for(driver, lambda d: d.find_elements(By.ID, "dead-letters"), "the dead letters")
            return env.redis("LLEN", "pythia:{emails}:dlq") == "2"
        checks.check("cancelling a delete deletes nothing", cancelled_delete)

        def pause_toggle():
            driver.get(base + "/queues/emails")
            driver.find_element(By.ID, "pause-toggle").click()
            wait_for(driver, lambda d: d.find_element(By.ID, "pause-state").text == "paused",
                     "the queue page says paused")
            if env.redis("EXISTS", "pythia:{emails}:paused") != "1":
                return "no pause flag in Redis"
            driver.find_element(By.ID, "pause-toggle").click()
            wait_for(driver, lambda d: d.find_element(By.ID, "pause-state").text == "running",
                     "the queue page says running")
            return env.redis("EXISTS", "pythia:{emails}:paused") == "0" or "flag left set"
        checks.check("the pause button pauses and resumes the queue (the flag in Redis)",
                     pause_toggle)

        def rates_shown():
            driver.get(base + "/")
            wait_for(driver, lambda d: cell(d, "emails", "paused") == "\u2013", "emails running")
            # No worker ran while the dashboard watched: both rates are 0.
            shown = (cell(driver, "emails", "processed_per_second"),
                     cell(driver, "emails", "failed_per_second"))
            return shown == ("0", "0") or f"processed, failed per second: {shown}"
        checks.check("overview shows the processed/failed rates and the pause state", rates_shown)

        def console_clean():
            errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
            return not errors or [e["message"][:160] for e in errors]
        checks.check("no console errors (no CSP violation)", console_clean)

        def token_login():
            tbase = env.dashboard(env={"PYTHIA_DASHBOARD_TOKEN": "s3cret-token"})
            driver.get(tbase + "/")
            if "Log in" not in driver.find_element(By.TAG_NAME, "h1").text:
                return "no login page without the token"
            driver.get(tbase + "/?token=s3cret-token")
            wait_for(driver, lambda d: d.find_elements(By.ID, "queues"), "the overview after login")
            if "token" in driver.current_url:
                return f"token left in the address: {driver.current_url}"
            cookie = driver.get_cookie("pythia_dashboard")
            if not cookie or cookie["value"] == "s3cret-token" or not cookie.get("httpOnly"):
                return f"cookie {cookie}"
            driver.get(tbase + "/queues/emails/dlq")
            return len(driver.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")) == 2
        checks.check("with a token: login page, ?token= login sets an HttpOnly session cookie",
                     token_login)
    except Exception as e:  # noqa: BLE001 - setup failed: counted, then reported
        checks.failed += 1
        print(f"FAIL setup ({type(e).__name__}: {e})", flush=True)
    finally:
        if driver is not None:
            driver.quit()
        env.close()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
