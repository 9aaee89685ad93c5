"""Shared builders of the SEM tests: the three-construct model and data simulated from it."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Experience -> Image -> Loyalty, with the indirect effect defined.
MODEL_CORE = """
Experience =~ CX1 + CX2 + CX3
Image      =~ IMG1 + IMG2 + IMG3
Loyalty    =~ LOY1 + LOY2 + LOY3
Image   ~ a*Experience
Loyalty ~ b*Image + c*Experience
indirect := a*b
"""
#: The same model with the total effect defined too.
MODEL = MODEL_CORE + "total := c + a*b\n"

TRUE_LOADING = 0.8
TRUE_A, TRUE_B, TRUE_C = 0.5, 0.4, 0.2
TRUE_PATHS = {
    ("Image", "~", "Experience"): TRUE_A,
    ("Loyalty", "~", "Image"): TRUE_B,
    ("Loyalty", "~", "Experience"): TRUE_C,
}


def draw_items(rng: np.random.Generator, n: int, offset: float = 0.0) -> pd.DataFrame:
    """Standardized latents and 9 items ``offset + 0.8 * latent + noise`` (variance 1)."""
    return draw_items_and_latents(rng, n, offset)[0]


def draw_items_and_latents(
    rng: np.random.Generator, n: int, offset: float = 0.0
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """:func:`draw_items` and the standardized latents it drew them from."""
    exp = rng.standard_normal(n)
    img = TRUE_A * exp + np.sqrt(1 - TRUE_A**2) * rng.standard_normal(n)
    explained = TRUE_B**2 + TRUE_C**2 + 2 * TRUE_B * TRUE_C * TRUE_A
    loy = TRUE_B * img + TRUE_C * exp + np.sqrt(1 - explained) * rng.standard_normal(n)
    data = {}
    for prefix, lat in (("CX", exp), ("IMG", img), ("LOY", loy)):
        for k in range(1, 4):
            noise = np.sqrt(1 - TRUE_LOADING**2) * rng.standard_normal(n)
            data[f"{prefix}{k}"] = offset + TRUE_LOADING * lat + noise
    return pd.DataFrame(data), {"Experience": exp, "Image": img, "Loyalty": loy}


#: The core model with a single-item construct (no ``=~ 1*`` / ``~~ 0*`` lines).
MODEL_SINGLE = MODEL_CORE + "Advocacy =~ NPS\nAdvocacy ~ Loyalty\n"
#: Correlation of the single item NPS with the Loyalty latent in :func:`simulate_single_item`.
TRUE_NPS_CORR = 0.6


def simulate_single_item(n: int = 500, seed: int = 2) -> pd.DataFrame:
    """:func:`simulate_small`'s items plus NPS = 5 + 2 (0.6 Loyalty + 0.8 noise)."""
    rng = np.random.default_rng(seed)
    frame, lat = draw_items_and_latents(rng, n, offset=3.0)
    noise = np.sqrt(1 - TRUE_NPS_CORR**2) * rng.standard_normal(n)
    frame["NPS"] = 5 + 2 * (TRUE_NPS_CORR * lat["Loyalty"] + noise)
    return frame


def simulate_collinear(n: int = 500, seed: int = 4) -> pd.DataFrame:
    """Items of the core model from latents with a latent R² of 0.99 for Loyalty.

    Image = 0.9 Experience + noise; Loyalty = 1.42 Image - 0.5 Experience + noise
    (explained variance 0.988, standardized Image path 1.42); loadings 0.9.
    """
    rng = np.random.default_rng(seed)
    exp = rng.standard_normal(n)
    img = 0.9 * exp + np.sqrt(1 - 0.81) * rng.standard_normal(n)
    explained = 1.42**2 + 0.5**2 - 2 * 1.42 * 0.5 * 0.9
    loy = 1.42 * img - 0.5 * exp + np.sqrt(1 - explained) * rng.standard_normal(n)
    data = {}
    for prefix, lat in (("CX", exp), ("IMG", img), ("LOY", loy)):
        for k in range(1, 4):
            noise = np.sqrt(1 - 0.9**2) * rng.standard_normal(n)
            data[f"{prefix}{k}"] = 3.0 + 0.9 * lat + noise
    return pd.DataFrame(data)


def latent_responses(n: int, seed: int) -> pd.DataFrame:
    """Standardized latent responses of 9 items (3 constructs, loadings 0.8)."""
    return draw_items(np.random.default_rng(seed), n)


def simulate_small(n=400, seed=1, missing=0.0, groups=False):
    """Items = 3 + 0.8 * latent + noise, optionally with missing answers and two segments."""
    rng = np.random.default_rng(seed)
    frame = draw_items(rng, n, offset=3.0)
    if missing:
        frame = frame.mask(rng.random(frame.shape) < missing)
    if groups:
        frame["segment"] = np.where(rng.random(n) < 0.97, "Consumer", "Enterprise")
    return frame
