"""The whole: config, the daemon as a process, the demo, the reliability harnesses, properties of every parser, security."""
