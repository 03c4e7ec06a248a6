"""Support for running ephw models on Intel's Lava framework (``lava-nc``)."""
