"""edgehive: MQTT, event-driven edge AI for fleets of Raspberry Pi and Jetson devices.

The architecture is the folder layout: `schemas/` (messages and topics), `broker/`
(embedded amqtt, Mosquitto config), `agents/` (the device agent), `coordinator/`
(registry, liveness, scheduler, job lifecycle). This package holds what they share:
settings, the MQTT layer and the command line.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
