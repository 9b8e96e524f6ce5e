"""The broker: amqtt embedded in-process for laptops and tests; Mosquitto config for production."""

from .embedded import EmbeddedBroker

__all__ = ["EmbeddedBroker"]
