"""``gate venue-dashboard``: the venue's live view of every lane, zone occupancy and signed
commands, served on the venue network (docs/dashboard.md).

One module, one job: ``settings`` (its own TOML, read strictly), ``bus`` (the MQTT connection as
the read-only ``venue-monitor``; no parsing), ``messages`` (hostile bus payloads read into
values, pure), ``venue`` (the aggregation: lanes, counts, zones; pure), ``hub`` (the bus's thread
→ the aggregation → the web's subscribers), ``auth`` (password hashes, sessions), ``commands``
(signed with the admin key held on this host, behind a confirmation), ``audit`` (the command
log), ``web`` (the Starlette app: pages, server-sent events), ``server`` (uvicorn, TLS, wiring).

A lane never imports this package (an import-linter contract in pyproject.toml).
"""
