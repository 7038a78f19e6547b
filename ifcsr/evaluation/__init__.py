"""Measuring IFCSR: metrics (`metrics`), gamma sweeps and the paper's table (`sweep`), peers and
ablations (`baselines`), real-world test sets (`benchmark`), speed and memory (`bench`), ghosting
artefacts (`artefacts`), choosing gamma (`autogamma`), the perception-distortion theory (`theory`),
and the names the command line offers (`names`). May import ifcsr's core, data and weights.

Import from the modules (``from ifcsr.evaluation.metrics import psnr_y``): this package imports
nothing, so the command line can list metric names without loading torch.
"""
