"""sage-edge: SAGE infrared-visible image fusion from desktop GPU to NVIDIA Jetson.

The core package never imports torch at import time; only ``sage_edge.models``
(and ``sage_edge.train`` / ``sage_edge.export``) need it.
"""
__version__ = "0.1.0"
