"""A bank of classic image filters applied to a real photo with one fastconv.conv2d call, then pooled.

    python examples/filters.py --out filter_bank.png

The photo is scikit-learn's sample image "china.jpg" (shipped with scikit-learn, nothing is downloaded), in
grayscale, as one channels-last image (1, H, W, 1). The bank holds Sobel x and y, a Gaussian blur, a Laplacian,
a sharpening kernel and Gabor filters at four orientations, each zero-padded to a common 9 x 9 so that they are the
K filters of one convolution with "same" padding. The script prints the time of that call against
scipy.ndimage.correlate run once per filter (the tool an image-processing user reaches for first), and saves the
grid: the photo, each filter's response, and 4 x 4 max and average pooling of one response.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastconv as fc

SIZE = 9  # every filter is centred in a SIZE x SIZE kernel


def _centred(kernel: np.ndarray) -> np.ndarray:
    """An odd-sized kernel zero-padded to SIZE x SIZE, its centre staying in the middle."""
    margin = (SIZE - kernel.shape[0]) // 2
    return np.pad(kernel, margin)


def _gaussian(sigma: float, size: int) -> np.ndarray:
    offsets = np.arange(size) - size // 2
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma ** 2))
    return kernel / kernel.sum()


def _gabor(theta: float, wavelength: float = 4.0, sigma: float = 2.0) -> np.ndarray:
    """A zero-mean SIZE x SIZE Gabor kernel responding to stripes at angle theta (radians)."""
    offsets = np.arange(SIZE) - SIZE // 2
    rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
    along = cols * np.cos(theta) + rows * np.sin(theta)
    kernel = np.exp(-(rows ** 2 + cols ** 2) / (2 * sigma ** 2)) * np.cos(2 * np.pi * along / wavelength)
    return kernel - kernel.mean()


def filter_bank() -> tuple[list[str], np.ndarray]:
    """The filters' names and weights (K, 1, SIZE, SIZE) float32, ready for conv2d."""
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
    kernels = {
        "Sobel x": sobel_x,
        "Sobel y": sobel_x.T,
        "Gaussian blur": _gaussian(1.5, SIZE),
        "Laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float),
        "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], float),
        **{f"Gabor {degrees}°": _gabor(np.deg2rad(degrees)) for degrees in (0, 45, 90, 135)},
    }
    weights = np.stack([_centred(kernel) for kernel in kernels.values()])[:, None].astype(np.float32)
    return list(kernels), weights


def grayscale_photo() -> np.ndarray:
    """scikit-learn's china.jpg as one grayscale channels-last image (1, H, W, 1), float32 in [0, 1]."""
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image("china.jpg").astype(np.float32) / 255
    return (rgb @ np.array([0.299, 0.587, 0.114], np.float32))[None, :, :, None]


def apply_bank(photo: np.ndarray, weights: np.ndarray, pool: int = 4) -> dict[str, np.ndarray]:
    """photo (1, H, W, 1), weights (K, 1, SIZE, SIZE) -> responses (1, H, W, K) and their pool x pool max and
    average pooling (1, H // pool, W // pool, K), all channels-last."""
    responses = fc.conv2d(photo, weights, padding="same", data_format="NHWC")
    return {"responses": responses,
            "max": fc.max_pool2d(responses, pool, data_format="NHWC"),
            "avg": fc.avg_pool2d(responses, pool, data_format="NHWC")}


def scipy_responses(photo: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The same responses with scipy.ndimage.correlate run once per filter (zeros outside the image)."""
    from scipy import ndimage

    image = photo[0, :, :, 0]
    return np.stack([ndimage.correlate(image, kernel[0], mode="constant", cval=0.0) for kernel in weights],
                    axis=-1)[None]


def best_seconds(call, repeat: int) -> float:
    """The fastest of repeat timed calls, after one untimed warm-up."""
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def save_grid(path: str, photo: np.ndarray, names: list[str], result: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("photo", photo[0, :, :, 0])]
    panels += [(name, result["responses"][0, :, :, k]) for k, name in enumerate(names)]
    panels += [("Sobel x, 4x4 max pool", result["max"][0, :, :, 0]),
               ("Sobel x, 4x4 avg pool", result["avg"][0, :, :, 0])]
    columns = 4
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows))
    for axis in axes.flat:
        axis.axis("off")
    for axis, (title, image) in zip(axes.flat, panels):
        axis.imshow(image, cmap="gray")
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="filter_bank.png", help="where to save the figure grid (PNG)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each method (the best is kept)")
    args = parser.parse_args(argv)
    names, weights = filter_bank()
    photo = grayscale_photo()
    result = apply_bank(photo, weights)
    fastconv_s = best_seconds(lambda: fc.conv2d(photo, weights, padding="same", data_format="NHWC"), args.repeat)
    scipy_s = best_seconds(lambda: scipy_responses(photo, weights), args.repeat)
    print(f"photo {photo.shape[1]} x {photo.shape[2]}, {len(names)} filters of {SIZE} x {SIZE}, float32, "
          f"{fc.get_num_threads()} threads")
    print(f"fastconv.conv2d (one call, backend {fc.get_backend()}): {1e3 * fastconv_s:.1f} ms")
    print(f"scipy.ndimage.correlate (once per filter):  {1e3 * scipy_s:.1f} ms  "
          f"(fastconv takes {fastconv_s / scipy_s:.2f}x scipy's time)")
    save_grid(args.out, photo, names, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
