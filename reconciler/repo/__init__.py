"""Reading a fleet repository at one revision: both sides use it."""
