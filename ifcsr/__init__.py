"""ifcsr: inference-free fidelity-realism control for one-step diffusion SR (IFCSR, CVPR 2026).

Importing this package pulls in neither matplotlib nor ipywidgets; `ifcsr.widgets` does.
"""

__version__ = "0.1.0"
