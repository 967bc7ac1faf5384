"""Venue sync over MQTT (DESIGN §5-6): ``messages`` is the pure wire format, ``client`` the
gate's connection to the broker. Imported only by a gate whose config has a ``[sync]`` table."""
