"""hwsim: simulated lane hardware that the real gate drivers talk to.

- ``pins``: gpiozero ``MockFactory`` pins that report every change;
- ``turnstile``: a turnstile wired to those pins (relays in, PASS contact and fire loop out);
- ``scanner``: a serial barcode scanner on a pseudo-terminal, read by the real pyserial driver;
- ``control``: a socket to drive and watch a simulated lane from another process;
- ``crowd`` / ``demo``: people presenting tickets, for ``scripts/demo``.
"""
