"""Synthetic images of objects made of parts, with exact part keypoints.

Part-prototype networks are judged by whether a prototype lands on the same
object part across images (:mod:`sklearn_interp.evaluation`'s consistency
and stability scores), which needs per-image part locations. CUB-200-2011
has them but cannot ship; :func:`make_part_objects` draws images in which
every part's position is known exactly and only some parts decide the class.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

#: Names of the parts of :func:`make_part_objects`, in the order of ``part_locs``.
PART_OBJECT_PARTS = ("head", "body", "tail", "wing", "leg")

# Canonical layout on a 64-pixel canvas: the centre offset (x, y) and radius
# of each part, in pixels before the global scale.
_LAYOUT = {
    "head": ((-21.0, -5.0), 6.0),
    "body": ((0.0, 0.0), 8.0),
    "tail": ((21.0, -2.0), 6.0),
    "wing": ((2.0, -17.0), 6.0),
    "leg": ((0.0, 17.0), 5.0),
}

_RED, _BLUE = (0.9, 0.15, 0.15), (0.15, 0.3, 0.9)
_GREEN, _YELLOW = (0.15, 0.7, 0.2), (0.95, 0.85, 0.1)
_GREY, _BROWN = (0.55, 0.55, 0.6), (0.5, 0.3, 0.1)


def _shape_mask(shape, dx, dy, radius):
    """Pixels of a primitive centred at offset 0, given the offset grids ``dx``, ``dy``."""
    if shape == "disc":
        return dx**2 + dy**2 <= radius**2
    if shape == "square":
        return (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    # An upward triangle: its width grows linearly from the apex to the base.
    return (dy >= -radius) & (dy <= radius) & (np.abs(dx) <= (dy + radius) / 2)


def _texture(texture, colour, xx, yy):
    """Per-pixel RGB of a patch: solid, or with dark diagonal stripes."""
    colour = np.asarray(colour)[:, None, None]
    if texture == "solid":
        return colour * np.ones(xx.shape)
    return colour * np.where(((xx + yy) // 2) % 2 == 0, 1.0, 0.25)


def _part_looks(head_colour, tail_shape, wing_texture):
    """(shape, colour, texture) of every part; three parts carry the class."""
    return {
        "head": ("disc", (_RED, _BLUE)[head_colour], "solid"),
        "body": ("disc", _GREY, "solid"),
        "tail": (("triangle", "square")[tail_shape], _GREEN, "solid"),
        "wing": ("disc", _YELLOW, ("solid", "striped")[wing_texture]),
        "leg": ("square", _BROWN, "solid"),
    }


def _paint(image, look, centre, radius, xx, yy):
    """Draw one primitive onto ``image`` (3, H, W) in place; return its mask."""
    shape, colour, texture = look
    mask = _shape_mask(shape, xx - centre[0], yy - centre[1], radius)
    image[:, mask] = _texture(texture, colour, xx, yy)[:, mask]
    return mask


@validate_params(
    {
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "image_size": [Interval(Integral, 16, None, closed="left")],
        "occlusion": [Interval(Real, 0, 1, closed="left")],
        "n_distractors": [Interval(Integral, 0, None, closed="left")],
        "flip": ["boolean"],
        "noise": [Interval(Real, 0, None, closed="left")],
        "return_masks": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_part_objects(
    n_samples: int = 800,
    *,
    image_size: int = 64,
    occlusion: float = 0.1,
    n_distractors: int = 1,
    flip: bool = True,
    noise: float = 0.05,
    return_masks: bool = False,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """RGB images of five-part objects whose class is decided by three parts.

    Every object has a head, body, tail, wing and leg (``PART_OBJECT_PARTS``)
    in a canonical layout, moved by a global translation (up to ±12 px on a
    64 px image, kept inside the frame), scaled by 0.8–1.2, mirrored
    left-right with probability 1/2 when ``flip``, and with each part moved
    by up to ±2 px on its own. The class (8 of them) is the combination of
    the head's colour (red, blue), the tail's shape (triangle, square) and
    the wing's texture (solid, striped); body and leg look the same in
    every class. Each part is hidden with probability ``occlusion`` (it is
    not drawn and its keypoint is marked invisible). The background is grey
    with Gaussian noise, and ``n_distractors`` copies of a diagnostic part's
    look, drawn independently of the class, are placed at random, so a
    prototype that keys on colour or texture alone and not on the part's
    place in the object lands off the part.

    Parameters
    ----------
    n_samples : int, default=800
    image_size : int, default=64
        Side of the square images; the layout scales with it.
    occlusion : float in [0, 1), default=0.1
        Probability that a part is hidden.
    n_distractors : int, default=1
        Label-independent copies of a diagnostic part per image.
    flip : bool, default=True
        Mirror half of the objects left to right.
    noise : float, default=0.05
        Standard deviation of the background noise.
    return_masks : bool, default=False
        Also return the pixel mask of every visible part.
    random_state : int, RandomState instance or None, default=None
        The images are a deterministic function of it.

    Returns
    -------
    X : ndarray of shape (n_samples, 3, image_size, image_size)
        float32 images in [0, 1].
    y : ndarray of shape (n_samples,)
        Class in 0..7: ``4·head_colour + 2·tail_shape + wing_texture``.
    part_locs : ndarray of shape (n_samples, 5, 3)
        ``(x, y, visible)`` of each part's centre in pixels (x the column,
        y the row), in the order of ``PART_OBJECT_PARTS``.
    masks : ndarray of shape (n_samples, 5, image_size, image_size)
        Only with ``return_masks``: the visible pixels of each part.

    See Also
    --------
    sklearn_interp.evaluation.ConsistencyScorer : Scores prototypes against these keypoints.
    load_cub200 : The real images with part keypoints this generator imitates.

    Examples
    --------
    >>> from sklearn_interp.datasets import make_part_objects
    >>> X, y, part_locs = make_part_objects(16, random_state=0)
    >>> X.shape, y.shape, part_locs.shape
    ((16, 3, 64, 64), (16,), (16, 5, 3))
    """
    rng = check_random_state(random_state)
    size = image_size
    unit = size / 64.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    attributes = rng.randint(2, size=(n_samples, 3))
    y = 4 * attributes[:, 0] + 2 * attributes[:, 1] + attributes[:, 2]

    X = np.empty((n_samples, 3, size, size), dtype=np.float32)
    part_locs = np.zeros((n_samples, len(PART_OBJECT_PARTS), 3))
    masks = np.zeros((n_samples, len(PART_OBJECT_PARTS), size, size), dtype=bool) if return_masks else None
    for i in range(n_samples):
        scale = rng.uniform(0.8, 1.2) * unit
        mirror = -1.0 if flip and rng.random_sample() < 0.5 else 1.0
        offsets = np.array([_LAYOUT[name][0] for name in PART_OBJECT_PARTS]) * scale
        offsets[:, 0] *= mirror
        offsets += rng.uniform(-2, 2, size=offsets.shape) * unit
        radii = np.array([_LAYOUT[name][1] for name in PART_OBJECT_PARTS]) * scale
        # Translate by up to ±12 px (at 64 px), but keep every part inside the frame.
        low = (radii[:, None] - offsets).max(axis=0)
        high = (size - 1 - radii[:, None] - offsets).min(axis=0)
        centre = size / 2 + rng.uniform(-12, 12, size=2) * unit
        centres = offsets + np.clip(centre, low, np.maximum(low, high))

        image = np.clip(0.5 + noise * rng.standard_normal((3, size, size)), 0, 1)
        looks = _part_looks(*attributes[i])
        diagnostic = [0, 2, 3]  # head, tail, wing
        for _ in range(n_distractors):
            part = diagnostic[rng.randint(3)]
            look = _part_looks(*rng.randint(2, size=3))[PART_OBJECT_PARTS[part]]
            where = rng.uniform(radii[part], size - 1 - radii[part], size=2)
            _paint(image, look, where, radii[part], xx, yy)
        visible = rng.random_sample(len(PART_OBJECT_PARTS)) >= occlusion
        for j, name in enumerate(PART_OBJECT_PARTS):
            if visible[j]:
                mask = _paint(image, looks[name], centres[j], radii[j], xx, yy)
                if return_masks:
                    # A part drawn later may cover an earlier one.
                    masks[i, :j] &= ~mask
                    masks[i, j] = mask
        X[i] = image
        part_locs[i, :, :2] = centres
        part_locs[i, :, 2] = visible
    if return_masks:
        return X, y, part_locs, masks
    return X, y, part_locs
