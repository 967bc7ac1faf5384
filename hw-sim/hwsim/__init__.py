"""hwsim: simulated lane hardware that the real gate drivers talk to.

- ``pins``: gpiozero ``MockFactory`` pins that report every change;
- ``turnstile``: a turnstile wired to those pins (relays in, PASS contact and fire loop out);
- ``scanner``: a serial barcode scanner on a pseudo-terminal, read by the real pyserial driver;
- ``camera``: frames of tickets on phones and paper as a camera sees them, for the real camera reader;
- ``phone``: a phone and an NFC tag in nfcpy's card emulation on its ``udp`` driver;
- ``corpus``: the barcode photographs in ../shared/corpus and a decoder's detection rates;
- ``clock``: whether the lane's clock counts as NTP-synchronized (flipped from the control socket);
- ``control``: a socket to drive and watch a simulated lane from another process;
- ``crowd`` / ``demo``: people presenting tickets, for ``scripts/demo``;
- ``timing``: waiting for a condition, and percentiles (the venue demo, the harnesses, the bench).
"""
