"""The MQTT broker: a project-local Mosquitto, or the one named by ``AMR_MQTT_URL``."""

from amr.broker.mosquitto import BrokerEndpoint, LocalMosquitto, broker_endpoint

__all__ = ["BrokerEndpoint", "LocalMosquitto", "broker_endpoint"]
