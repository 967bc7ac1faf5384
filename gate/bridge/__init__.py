"""``gate bridge``: the venue's back-office link (docs/back-office.md).

A venue-side daemon, a client of the venue bus like any dashboard: it reads every lane's signed
ledger records and pushes the confirmed passages to the ticketing systems (pretix check-ins,
OPN Ticket Engine actions, signed webhooks) through a durable queue, and it pulls pretix's keys,
check-in lists, valid, revoked and blocked secrets into trust documents, which it publishes as
signed bundles and revocation deltas, as ``gate bundle publish`` does.

One module, one job:

- ``config``: the bridge's own TOML file, read strictly (a typo fails at start-up);
- ``store``: its own SQLite file: the upload queue, the records it heard, the secrets it pulled;
- ``pretix``: pretix's REST API (device enrolment, the pulls, ``checkinrpc/redeem``);
- ``opn``: the OPN Ticket Engine's ``POST /stream``;
- ``webhooks``: Standard Webhooks deliveries (signing);
- ``builder``: what was pulled, as trust documents, bundles and deltas;
- ``listener``: the bus: ledger records in, bundles and deltas out;
- ``refusals``: the lanes' refusals (``scans/``) as pretix's failed check-ins;
- ``uploader``: the queue's workers, one per destination;
- ``health``: what each service last answered, and what in a status needs an operator;
- ``metrics``: the Prometheus endpoint (the lanes' server, the bridge's collector);
- ``service``: the wiring and the lifecycle (``gate bridge run``).

The lane never imports this package (import-linter holds it).
"""
