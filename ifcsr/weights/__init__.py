"""Every download and cache of weights: the cache paths (`cache`), the one sha256-verified atomic
download/install (`download`), the VGG16 of HED (`hed`) and Real-ESRGAN x4plus (`realesrgan`).
May import ifcsr.errors and ifcsr.provenance only.

Import from the modules (``from ifcsr.weights.hed import load_hed_vgg16``): this package imports
nothing, so the command line can read a cache path without loading torch.
"""
