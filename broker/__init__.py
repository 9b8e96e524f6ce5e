"""The broker: amqtt embedded in-process for laptops and tests; Mosquitto config for production."""

from .embedded import BrokerStartError, EmbeddedBroker

__all__ = ["BrokerStartError", "EmbeddedBroker"]
