"""ifcsr: inference-free fidelity-realism control for one-step diffusion SR (IFCSR, CVPR 2026).
Imports only ifcsr.quiet (logging): the rooms are ifcsr.weights, .data, the core modules,
.evaluation, .widgets, .cli.

Importing this package pulls in neither matplotlib nor ipywidgets; `ifcsr.widgets` does. It
drops two third-party log lines about a quantisation kernel IFCSR never uses (ifcsr.quiet).
"""

from ifcsr.quiet import quiet_third_party as _quiet_third_party

__version__ = "0.1.0"

_quiet_third_party()
