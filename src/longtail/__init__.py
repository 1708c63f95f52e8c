"""longtail: long-tailed visual recognition in PyTorch.

Drop-in parts live in the sub-packages (``longtail.losses``, ``longtail.samplers``,
``longtail.data``, ``longtail.models``, ``longtail.evaluation``, ``longtail.detection``);
``longtail.engine`` holds the plain training functions and ``longtail.cli`` the command line.
"""

__version__ = "0.1.0"
