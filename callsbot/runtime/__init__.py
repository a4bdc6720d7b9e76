"""Running callsbot: the service contract, the wiring of every role, the process."""
