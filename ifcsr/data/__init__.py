"""Images in and out: image files and tensors (`images`), the sample photos (`samples`), the
Real-ESRGAN-style degradations (`degradations`), training and paired datasets (`folders`), and
the real-world test sets to download (`datasets`). May import ifcsr.errors, ifcsr.provenance and
ifcsr.weights; nothing of the paper's core, evaluation, widgets or cli.

Every public name is available here (``from ifcsr.data import load_image, HELD_OUT``), imported
on first use; the library itself imports from the modules.
"""

from __future__ import annotations

from ifcsr.lazy import lazy_names

# public name -> the module that defines it (imported on first use, so importing the package is free)
_NAMES = {
    "ImageError": "images", "to_tensor": "images", "check_range": "images", "to_uint8": "images",
    "BACKGROUND": "images", "load_image": "images", "save_image": "images",
    "SAMPLE_NAMES": "samples", "HELD_OUT": "samples", "TRAIN_NAMES": "samples", "load_sample": "samples",
    "EXTRA_NAMES": "samples", "PHOTO_NAMES": "samples", "VALIDATION_NAMES": "samples",
    "GENERATOR_TRAIN_NAMES": "samples", "load_photo": "samples",
    "sample_images": "samples", "train_images": "samples", "held_out_images": "samples",
    "quantize": "degradations", "KERNEL_KINDS": "degradations", "KERNEL_SIZES": "degradations",
    "KERNEL_PAD": "degradations", "blur_kernel": "degradations", "sinc_kernel": "degradations",
    "random_kernel": "degradations", "RESIZE_MODES": "degradations", "apply_blur": "degradations",
    "resize": "degradations", "random_resize": "degradations", "add_gaussian_noise": "degradations",
    "add_poisson_noise": "degradations", "jpeg_compress": "degradations",
    "BicubicDegradation": "degradations", "DegradationParams": "degradations",
    "RealESRGANDegradation": "degradations",
    "IMAGE_EXTENSIONS": "folders", "ImageFolder": "folders", "SampleDataset": "folders", "PhotoDataset": "folders",
    "MixedDataset": "folders", "pair_key": "folders", "PairedFolder": "folders",
    "pairs_from_samples": "folders",
    "PIN_FILE": "datasets", "DatasetNotFoundError": "datasets", "DatasetDownloadError": "datasets",
    "DatasetSpec": "datasets", "DATASETS": "datasets", "cache_root": "datasets",
    "dataset_cache_dir": "datasets", "resolve_dataset": "datasets", "how_to_get": "datasets",
    "expectedfile_sha256": "datasets", "verify_dataset": "datasets", "fetch_dataset": "datasets",
}
__all__ = sorted(_NAMES)

__getattr__, __dir__ = lazy_names(__name__, _NAMES)
