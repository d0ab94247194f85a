"""The top layer: the `amr` command, the demo, and whatever wires several stages together."""
