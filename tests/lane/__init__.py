"""A lane (gate/lane): the turnstile controller and the decision loop in unit tests, and whole lanes with their readers."""
