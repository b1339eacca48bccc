"""Library OS booted from a Gramine-syntax manifest (issue 3)."""
