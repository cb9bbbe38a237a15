"""charlm: character-level recurrent language models with truncated BPTT.

The public names are imported lazily by their modules; importing ``charlm``
itself has no side effects and does not import torch.
"""

__version__ = "0.1.0"
