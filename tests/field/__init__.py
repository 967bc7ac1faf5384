"""What a technician uses (gate/field): status, doctor, metrics, the unit file and the installer."""
