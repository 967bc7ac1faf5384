"""The venue bus (gate/sync), against a real mosquitto."""
