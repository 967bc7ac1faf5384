"""Hardware adapters. Each depends only on its library and the small interfaces in
``gate.lane.hardware``; the simulator (``hwsim``) feeds the same drivers with simulated devices."""
