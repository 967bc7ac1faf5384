"""What the screen at the lane says, in the venue's language (``[display] language``): the screens
and every refusal reason in words a guest and the staff understand. A missing word falls back to
English. Add a language by adding a table; keep the reason codes (gate.decision.Reason, DESIGN §2)."""

from __future__ import annotations

SCREENS = ("waiting", "checking", "welcome", "goodbye", "refused", "closed", "free", "out_of_order", "emergency")

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "waiting": "Please scan your ticket",
        "waiting.sub": "QR code, phone or card",
        "checking": "Checking…",
        "welcome": "Welcome!",
        "welcome.sub": "Please walk through",
        "goodbye": "Goodbye!",
        "goodbye.sub": "Please walk through",
        "refused": "Sorry, no entry",
        "refused.sub": "Please see a member of staff",
        "closed": "Lane closed",
        "closed.sub": "Please use another lane",
        "free": "Please walk through",
        "out_of_order": "Out of order",
        "out_of_order.sub": "Please use another lane",
        "emergency": "EMERGENCY",
        "emergency.sub": "Please leave calmly. The gates are open.",
        "reason.unreadable": "Ticket could not be read. Please try again.",
        "reason.unknown_format": "This is not a ticket we know.",
        "reason.bad_signature": "This ticket is not valid.",
        "reason.unknown_key": "This ticket is not valid here.",
        "reason.revoked": "This ticket has been cancelled.",
        "reason.blocked": "This ticket is blocked.",
        "reason.not_yet_valid": "This ticket is not valid yet.",
        "reason.expired": "This ticket has expired.",
        "reason.wrong_event": "This ticket is for another event.",
        "reason.wrong_product": "This ticket is not valid at this entrance.",
        "reason.wrong_zone": "This ticket is for another area.",
        "reason.already_used": "This ticket has already been used.",
        "reason.stale_proof": "Please show the live ticket in your app.",
        "reason.replayed_proof": "Please show the live ticket in your app.",
        "reason.clock_unsynced": "The lane cannot check this ticket right now.",
        "reason.gate_closed": "This lane is closed.",
        "reason.emergency": "Emergency: please leave calmly.",
        "reason.busy": "Please wait until the person in front has passed.",
        "reason.error": "Something went wrong. Please try again.",
        "reason.recovering": "The lane is starting. Please wait a moment.",
        "reason.zone_full": "This area is full.",
    },
    "de": {
        "waiting": "Bitte Ticket scannen",
        "waiting.sub": "QR-Code, Handy oder Karte",
        "checking": "Wird geprüft…",
        "welcome": "Willkommen!",
        "welcome.sub": "Bitte eintreten",
        "goodbye": "Auf Wiedersehen!",
        "goodbye.sub": "Bitte durchgehen",
        "refused": "Leider kein Einlass",
        "refused.sub": "Bitte wenden Sie sich an das Personal",
        "closed": "Spur geschlossen",
        "closed.sub": "Bitte eine andere Spur benutzen",
        "free": "Bitte durchgehen",
        "out_of_order": "Außer Betrieb",
        "out_of_order.sub": "Bitte eine andere Spur benutzen",
        "emergency": "NOTFALL",
        "emergency.sub": "Bitte ruhig verlassen. Die Sperren sind offen.",
        "reason.unreadable": "Ticket nicht lesbar. Bitte erneut versuchen.",
        "reason.revoked": "Dieses Ticket wurde storniert.",
        "reason.expired": "Dieses Ticket ist abgelaufen.",
        "reason.wrong_event": "Dieses Ticket gilt für eine andere Veranstaltung.",
        "reason.wrong_zone": "Dieses Ticket gilt für einen anderen Bereich.",
        "reason.already_used": "Dieses Ticket wurde bereits benutzt.",
        "reason.stale_proof": "Bitte das Live-Ticket in der App zeigen.",
        "reason.gate_closed": "Diese Spur ist geschlossen.",
        "reason.busy": "Bitte warten, bis die Person vor Ihnen durch ist.",
        "reason.zone_full": "Dieser Bereich ist voll.",
    },
    "fr": {
        "waiting": "Veuillez scanner votre billet",
        "checking": "Vérification…",
        "welcome": "Bienvenue !",
        "welcome.sub": "Veuillez passer",
        "refused": "Désolé, accès refusé",
        "refused.sub": "Adressez-vous au personnel",
        "closed": "Ligne fermée",
        "out_of_order": "Hors service",
        "emergency": "URGENCE",
        "emergency.sub": "Sortez calmement. Les portillons sont ouverts.",
        "reason.already_used": "Ce billet a déjà été utilisé.",
        "reason.revoked": "Ce billet a été annulé.",
        "reason.zone_full": "Cette zone est complète.",
    },
}

DEFAULT_LANGUAGE = "en"


def text(language: str, key: str) -> str:
    """The words for ``key`` in ``language``, else in English, else ''."""
    return TEXTS.get(language, {}).get(key) or TEXTS[DEFAULT_LANGUAGE].get(key, "")


def reason_text(language: str, reason: str) -> str:
    return text(language, f"reason.{reason}") or text(language, "refused.sub")
