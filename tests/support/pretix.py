"""A real pretix server for the bridge's tests: pretix==2026.8.0 from PyPI, in its OWN virtualenv
(never the gate venv), SQLite, no Redis, no Celery (tasks run inline), on 127.0.0.1.

- ``ensure_pretix()``: the virtualenv under ``.cache/pretix/`` (or ``$GATE_PRETIX_VENV``),
  installed when missing (about a minute; ``scripts/test`` does it up front). When it cannot be
  installed the tests that need it skip, saying why.
- ``PretixTemplate``: once per test run, ``migrate`` (about 100 s on 2 cores) and seed (an
  organizer, events, items, check-in lists, an admin team token, a device's initialization token,
  paid orders) into a data directory of the run's own temporary tree; never kept across runs.
- ``PretixServer``: one test's pretix: a copy of that data directory, its own port,
  ``runserver`` started and stopped like a real outage (``stop(kill=True)`` is a crash), and
  the admin's API (team token) to sell, cancel, block and read check-ins, as a person in
  pretix's back office would.

Facts: ../shared/reference/pretix-api.md.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from hwsim.broker import free_port

PRETIX_VERSION = "2026.8.0"
ROOT = Path(__file__).resolve().parents[2]
SEED = Path(__file__).with_name("pretix_seed.py")


class PretixUnavailable(Exception):
    """pretix cannot be installed here (no network to PyPI, no Python venv): tests skip."""


def venv_dir() -> Path:
    return Path(os.environ.get("GATE_PRETIX_VENV") or ROOT / ".cache" / "pretix" / f"venv-{PRETIX_VERSION}")


def ensure_pretix() -> Path:
    """pretix's interpreter, installing pretix into its own virtualenv first when missing."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    stamp = venv / f".pretix-{PRETIX_VERSION}-installed"
    if stamp.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once: one installs, the other waits
        if stamp.exists():
            return python
        started = time.monotonic()
        try:
            if not python.exists():
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
            subprocess.run([str(python), "-m", "pip", "install", "-q", f"pretix=={PRETIX_VERSION}"], check=True,
                           capture_output=True, timeout=1200)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            output = getattr(exc, "stderr", b"") or b""
            raise PretixUnavailable(f"pretix=={PRETIX_VERSION} could not be installed into {venv}: "
                                    f"{output.decode(errors='replace')[-500:] or exc}") from None
        stamp.write_text(f"installed in {time.monotonic() - started:.0f} s\n")
    return python


def _config(datadir: Path, port: int) -> str:
    return (f"[pretix]\nurl=http://127.0.0.1:{port}\ndatadir={datadir}\ncurrency=EUR\necb_rates=off\n"
            "[database]\nbackend=sqlite3\n[django]\ndebug=off\n[mail]\nfrom=pretix@localhost\n")


class PretixTemplate:
    """A migrated, seeded data directory, made once per test run."""

    def __init__(self, python: Path, workdir: Path, spec: dict[str, Any]) -> None:
        self.python = python
        self.datadir = workdir / "data"
        self.datadir.mkdir(parents=True)
        cfg = workdir / "pretix.cfg"
        cfg.write_text(_config(self.datadir, 80))
        env = {**os.environ, "PRETIX_CONFIG_FILE": str(cfg)}
        started = time.monotonic()
        self._run([str(python), "-m", "pretix", "migrate", "-v", "0"], env, 900)
        self.migrate_seconds = time.monotonic() - started
        started = time.monotonic()
        out = self._run([str(python), str(SEED), json.dumps(spec)], env, 600)
        self.seed_seconds = time.monotonic() - started
        self.seed = json.loads(out.strip().splitlines()[-1])
        (workdir / "seed.json").write_text(json.dumps(self.seed))  # this run's only: for a person looking into a failure
        # Write-ahead logging, once: it stays in the file, so every copy has it. In pretix's default
        # rollback journal each check-in commit costs several fsyncs and a reader blocks a writer
        # ("database is locked" as a 500); a venue's pretix runs on PostgreSQL, which neither does.
        db = sqlite3.connect(self.datadir / "db.sqlite3")
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        finally:
            db.close()  # the last connection: the log is checkpointed and removed, the copies are one file
        if mode != "wal":
            raise RuntimeError(f"pretix's database stayed in journal mode {mode!r}")

    @staticmethod
    def _run(cmd: list[str], env: dict[str, str], timeout: float) -> str:
        result = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed: {result.stderr.decode(errors='replace')[-2000:]}")
        return result.stdout.decode()


class PretixServer:
    """One test's pretix (a copy of the template's data), and its back office's API."""

    def __init__(self, template: PretixTemplate, workdir: Path) -> None:
        self.template = template
        self.seed = template.seed
        self.organizer = self.seed["organizer"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.datadir = workdir / "data"
        shutil.copytree(template.datadir, self.datadir)
        self.cfg = workdir / "pretix.cfg"
        self.cfg.write_text(_config(self.datadir, self.port))
        self.process: subprocess.Popen[bytes] | None = None
        self.admin = httpx.Client(base_url=f"{self.url}/api/v1/organizers/{self.organizer}",
                                  headers={"Authorization": f"Token {self.seed['team_token']}"}, timeout=30)
        self.start()

    @property
    def device_token(self) -> str:
        return str(self.seed["device_tokens"][0])

    def start(self) -> None:
        assert self.process is None
        log = open(self.workdir / "pretix.log", "ab")
        self.process = subprocess.Popen(
            [str(self.template.python), "-m", "pretix", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
            env={**os.environ, "PRETIX_CONFIG_FILE": str(self.cfg)}, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:  # ready: the API answers (401 without a token)
            try:
                if httpx.get(f"{self.url}/api/v1/", timeout=1).status_code == 401:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pretix did not start: {(self.workdir / 'pretix.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)  # its own session: runserver's children too
        self.process.wait(20)
        self.process = None

    def close(self) -> None:
        self.stop(kill=True)
        self.admin.close()

    # --- the back office, through pretix's own API ------------------------------------------

    def event(self, slug: str) -> dict[str, Any]:
        return self.seed["events"][slug]

    def sell(self, slug: str, email: str = "buyer@example.org") -> dict[str, Any]:
        """A paid order of one ticket; its position (with the secret pretix made)."""
        item = self.event(slug)["items"][0]
        order = self._back_office(f"/events/{slug}/orders/", {
            "email": email, "locale": "en", "sales_channel": "web", "payment_provider": "manual", "status": "p",
            "send_email": False, "positions": [{"item": item, "price": "10.00"}]}, expect=201).json()
        return {"order": order["code"], **order["positions"][0]}

    def cancel(self, slug: str, order: str) -> None:
        self._back_office(f"/events/{slug}/orders/{order}/mark_canceled/", {"send_email": False})

    def block(self, slug: str, position: int) -> None:
        self._back_office(f"/events/{slug}/orderpositions/{position}/add_block/", {"name": "admin"})

    def _back_office(self, path: str, body: dict[str, Any], expect: int = 200, timeout: float = 30.0) -> Any:
        """A back-office change, tried again while pretix answers 5xx: pretix on SQLite (this
        suite's) answers 500 "database is locked" when the change lands while the bridge uploads
        (a check-in, a failed check-in); on PostgreSQL it would wait. A person clicks again (the
        500 rolled the change back: trying again does it once)."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.admin.post(path, json=body)
            if answer.status_code < 500 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status_code == expect, answer.text
        return answer

    def checkins(self, slug: str) -> list[dict[str, Any]]:
        """Every successful check-in pretix holds for the event."""
        out: list[dict[str, Any]] = []
        url: str | None = f"/events/{slug}/checkins/?successful=true"
        while url:
            answer = self.admin.get(url)
            assert answer.status_code == 200, answer.text
            page = answer.json()
            out += page["results"]
            url = page["next"]
        return out
