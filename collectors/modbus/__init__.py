"""Modbus collection: register maps, codec, block planning."""
