"""The FastAGI server and the call flows (one module per AGI route under
``ivr.flows``). Imports only ``hotline.core``."""
