"""The ticket formats (gate/formats): each against the real systems' own outputs, and hostile input."""
