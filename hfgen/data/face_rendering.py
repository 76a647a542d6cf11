"""Drawing synthetic faces from AU intensities ([`render_face`]) and showing faces in a figure ([`face_grid`])."""

from __future__ import annotations

import math

import numpy as np

from hfgen.data.faces import AU_DESCRIPTIONS


def render_face(intensity: dict, rng: np.random.Generator, image_size: int = 48, supersample: int = 2) -> np.ndarray:
    """One RGB face ``[H, W, 3]`` uint8 showing the given AU intensities (``{'AU12': 0.8, ...}``).

    Pose, scale, skin, background and pixel noise are random; the drawing is the face-coordinate
    geometry below (x, y in units of the face half-width, y down).
    """
    from PIL import Image, ImageDraw

    a = {au: float(intensity.get(au, 0.0)) for au in AU_DESCRIPTIONS}
    S = image_size * supersample
    bg = tuple(int(c) for c in rng.integers(90, 170, 3))
    img = Image.new("RGB", (S, S), bg)
    d = ImageDraw.Draw(img, "RGBA")
    s = S * 0.36 * rng.uniform(0.92, 1.08)
    cx, cy = S / 2 + rng.uniform(-0.05, 0.05) * S, S / 2 + rng.uniform(-0.04, 0.04) * S
    skin = np.array([224, 172, 140]) * rng.uniform(0.85, 1.05) + rng.uniform(-8, 8, 3)
    skin = tuple(int(c) for c in np.clip(skin, 40, 255))
    dark = (35, 25, 25, 255)
    w = max(1, round(0.09 * s))

    def P(x, y):
        return (cx + s * x, cy + s * y)

    jaw = 0.12 * a["AU26"]
    d.ellipse([*P(-1.0, -1.2), *P(1.0, 1.2 + jaw)], fill=skin)
    for side in (-1, 1):  # cheeks (AU6)
        if a["AU6"] > 0:
            d.ellipse([*P(side * 0.45 - 0.17, 0.12), *P(side * 0.45 + 0.17, 0.40)], fill=(215, 70, 70, int(150 * a["AU6"])))
        # eyes (AU5 widens, AU6 pushes the lower lid up)
        eh = 0.07 + 0.09 * a["AU5"] - 0.02 * a["AU6"]
        ex, ey = side * 0.38, -0.15
        d.ellipse([*P(ex - 0.13, ey - eh), *P(ex + 0.13, ey + eh)], fill=(245, 245, 245))
        d.ellipse([*P(ex - 0.05, ey - 0.05), *P(ex + 0.05, ey + 0.05)], fill=dark)
        # brows: inner end raised by AU1 and lowered/drawn in by AU4, outer end raised by AU2
        inner = P(side * (0.13 - 0.05 * a["AU4"]), -0.42 - 0.17 * a["AU1"] + 0.12 * a["AU4"])
        outer = P(side * 0.60, -0.44 - 0.17 * a["AU2"])
        d.line([inner, outer], fill=dark, width=w + 1)
    if a["AU4"] > 0:  # the glabellar furrow
        for x in (-0.04, 0.04):
            d.line([P(x, -0.36), P(x, -0.22)], fill=(60, 40, 40, int(255 * a["AU4"])), width=w)
    d.line([P(0.0, -0.08), P(-0.06, 0.22), P(0.06, 0.22)], fill=(120, 80, 70, 255), width=w)  # nose
    if a["AU9"] > 0:  # nose wrinkles
        for y in (-0.05, 0.03, 0.11):
            d.line([P(-0.13, y), P(0.13, y)], fill=(70, 40, 40, int(255 * a["AU9"])), width=w)
    # mouth: corners up (AU12) or down (AU15), wider (AU20), thinner and narrower (AU23), open (AU26)
    half = 0.30 * (1 + 0.40 * a["AU20"] - 0.20 * a["AU23"])
    corner = 0.55 - 0.16 * a["AU12"] + 0.16 * a["AU15"]
    opening = 0.26 * a["AU26"]
    xs = np.linspace(-1, 1, 9)
    upper = [P(half * x, corner + (0.55 - corner) * (1 - x * x) - opening / 2) for x in xs]
    lower = [P(half * x, corner + (0.55 - corner) * (1 - x * x) + opening / 2 + 0.02) for x in xs]
    if opening > 0.02:
        d.polygon(upper + lower[::-1], fill=(60, 15, 20, 255))
    lip = max(1, round(w * (1.6 - 1.0 * a["AU23"])))
    d.line(upper, fill=(150, 50, 60, 255), width=lip)
    d.line(lower, fill=(150, 50, 60, 255), width=lip)
    img = img.resize((image_size, image_size), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (image_size, image_size, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def face_grid(images, n: int = 16, ncols: int = 8, titles=None):
    """A matplotlib figure showing the first ``n`` images (uint8 ``[N, H, W, 3]``)."""
    import matplotlib.pyplot as plt

    n = min(n, len(images))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.5 * nrows))
    for k, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k])
            if titles is not None:
                ax.set_title(titles[k], fontsize=6)
    fig.tight_layout()
    return fig
