"""Seeds a migrated pretix database without a browser (run by tests/support/pretix.py with
pretix's OWN interpreter, never the gate venv's): an organizer, events with their items, quotas
and check-in lists, an admin team token, a device's initialization token, and paid orders.
Prints one JSON object with what the tests need (tokens, ids, secrets).

    PRETIX_CONFIG_FILE=pretix.cfg python pretix_seed.py '{"events": [{"slug": "democon", "secrets": "pretix_sig1", "orders": 10}]}'

Facts from ../shared/reference/pretix-api.md (pretix 2026.8.0).
"""

import json
import os
import sys

# This file's folder holds tests/support/pretix.py, which would shadow pretix itself.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]


def main() -> None:
    spec = json.loads(sys.argv[1])
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pretix.settings")  # reads PRETIX_CONFIG_FILE
    django.setup()
    from datetime import timedelta
    from decimal import Decimal

    from django.db import transaction
    from django.utils.timezone import now
    from django_scopes import scopes_disabled
    from pretix.base.models import Device, Event, Item, Order, OrderPosition, Organizer, Team

    out = {"events": {}}
    with scopes_disabled():
        organizer = Organizer.objects.filter(slug=spec.get("organizer", "venue")).first()
        if organizer is None:
            organizer = Organizer.objects.create(slug=spec.get("organizer", "venue"), name="Test venue")
        out["organizer"] = organizer.slug
        if spec.get("team", True):
            team = Team.objects.create(organizer=organizer, name="admins", all_events=True, all_event_permissions=True,
                                       all_organizer_permissions=True)
            out["team_token"] = team.tokens.create(name="tests").token
        for n in range(spec.get("devices", 1)):
            device = Device.objects.create(organizer=organizer, name=f"bridge {n}", all_events=True,
                                           security_profile="pretixscan")
            out.setdefault("device_tokens", []).append(device.initialization_token)
        channel = organizer.sales_channels.get(identifier="web")
        for ev in spec.get("events", []):
            event = Event.objects.create(organizer=organizer, name=ev["slug"], slug=ev["slug"],
                                         date_from=now() + timedelta(days=1), currency="EUR", live=True)
            event.settings.ticket_secret_generator = ev.get("secrets", "pretix_sig1")
            items = []
            for name in ev.get("items", ["Admission"]):
                item = Item.objects.create(event=event, name=name, default_price=Decimal("10.00"), admission=True)
                items.append(item)
            quota = event.quotas.create(name="all", size=None)
            quota.items.set(items)
            lst = event.checkin_lists.create(name="Entrance", all_products=True)
            tickets = []
            with transaction.atomic():
                for i in range(ev.get("orders", 0)):
                    item = items[i % len(items)]
                    order = Order.objects.create(event=event, status=Order.STATUS_PAID, email=f"buyer{i}@example.org",
                                                 locale="en", total=Decimal("10.00"), sales_channel=channel,
                                                 datetime=now(), expires=now() + timedelta(days=1))
                    position = OrderPosition.objects.create(order=order, item=item, price=Decimal("10.00"),
                                                            positionid=1)
                    order.create_transactions()
                    tickets.append({"order": order.code, "position": position.pk, "secret": position.secret,
                                    "item": item.pk})
            out["events"][ev["slug"]] = {"list": lst.pk, "items": [i.pk for i in items], "tickets": tickets}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
