"""ifcsr: inference-free fidelity-realism control for one-step diffusion SR (IFCSR, CVPR 2026).
Imports nothing: the rooms are ifcsr.weights, .data, the core modules, .evaluation, .widgets, .cli.

Importing this package pulls in neither matplotlib nor ipywidgets; `ifcsr.widgets` does.
"""

__version__ = "0.1.0"
