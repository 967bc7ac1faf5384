"""What a technician at the lane uses: the status socket and its view, ``gate doctor``, metrics,
systemd notification and the journal-friendly log set-up."""
