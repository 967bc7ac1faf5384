"""One lane: the decision loop, the engine that decides, the turnstile controller that moves the
outputs, the commands a lane carries out (``control``), and the hardware interface with its
Raspberry Pi implementation (``pi``)."""
