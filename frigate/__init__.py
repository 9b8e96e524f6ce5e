"""`edgehive frigate`: a second opinion on Frigate's events from the edgehive fleet (service.py)."""
