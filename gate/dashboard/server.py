"""``gate venue-dashboard run``: the dashboard's parts wired together and served by uvicorn
(HTTPS when ``[dashboard] cert_file`` is set). Wiring and lifecycle only."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from gate.dashboard.audit import AuditLog
from gate.dashboard.auth import Auth
from gate.dashboard.bus import BusReader
from gate.dashboard.commands import Commander
from gate.dashboard.hub import Hub
from gate.dashboard.settings import DashboardConfig
from gate.dashboard.venue import Venue
from gate.dashboard.web import create_app

log = logging.getLogger(__name__)


@dataclass
class Dashboard:
    config: DashboardConfig
    hub: Hub
    bus: BusReader
    commander: Commander
    app: Any


def build(config: DashboardConfig) -> Dashboard:
    venue = Venue(config.venue, stale_after=config.stale_after, capacity=dict(config.capacity),
                  alarm_percent=config.alarm_percent)
    hub = Hub(venue, config.bus.topic_root, config.admin_key, command_wait=config.commands.wait)
    bus = BusReader(config.bus, config.venue, hub.on_message, hub.on_connection)
    commander = Commander(config.commands, config.venue, hub, AuditLog(config.audit_log))
    app = create_app(hub=hub, auth=Auth(config.users, config.session_hours), commander=commander, title=config.title,
                     push_interval=config.push_interval, secure_cookie=config.tls)
    return Dashboard(config, hub, bus, commander, app)


def uvicorn_server(dashboard: Dashboard) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            dashboard.hub.close()  # the pages' event streams end, so uvicorn need not cut them
            await super().shutdown(sockets)

    config = dashboard.config
    settings = uvicorn.Config(dashboard.app, host=config.host, port=config.port, log_config=None, access_log=False,
                              ssl_certfile=config.cert_file or None, ssl_keyfile=config.key_file or None,
                              timeout_graceful_shutdown=1, lifespan="off")
    return Server(settings)


def run(config: DashboardConfig) -> int:
    """Serve until SIGTERM or SIGINT (uvicorn handles both); the bus connects in the background."""
    for warning in config.warnings:
        log.warning("config %s", warning)
    dashboard = build(config)
    dashboard.bus.start()
    server = uvicorn_server(dashboard)
    log.info("dashboard serving url=%s venue=%s tls=%s commands=%s users=%d", config.url, config.venue, config.tls,
             "on" if dashboard.commander.enabled else "off (no admin key)", len(config.users))
    started = time.monotonic()
    try:
        server.run()
    finally:
        dashboard.bus.stop()
        log.info("dashboard stopped after_s=%.0f", time.monotonic() - started)
    return 0 if server.started else 1
