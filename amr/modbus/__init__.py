"""The Modbus protocol layer shared by the collector (client) and the simulators (server): register maps,
value codec, RTU framing and CRC."""
