"""Loader for CUB-200-2011 in its standard directory layout (no data ships)."""

from __future__ import annotations

import os
from numbers import Integral
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, StrOptions, validate_params


def _read_table(path, n_columns):
    """Rows of a whitespace-separated CUB text file; the last column keeps its spaces."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; data_home must be the CUB_200_2011 folder holding images.txt, "
            "image_class_labels.txt, train_test_split.txt, bounding_boxes.txt, classes.txt and parts/."
        )
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            fields = line.split(maxsplit=n_columns - 1)
            if len(fields) != n_columns:
                raise ValueError(f"{path}, line {number}: expected {n_columns} fields, got {line!r}.")
            rows.append(fields)
    return rows


@validate_params(
    {
        "data_home": [str, Path],
        "split": [StrOptions({"train", "test", "all"})],
        "image_size": [Interval(Integral, 1, None, closed="left")],
        "classes": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def load_cub200(
    data_home: str | os.PathLike[str],
    *,
    split: Literal["train", "test", "all"] = "test",
    image_size: int = 224,
    classes: ArrayLike | None = None,
) -> Bunch:
    """CUB-200-2011 birds cropped to their boxes, with the 15 part keypoints.

    Follows the evaluation protocol of Huang et al. (2023): each image is
    cropped to its annotated bird box (coordinates truncated to integers)
    and resized to ``image_size`` × ``image_size`` without keeping the aspect
    ratio, and each keypoint is mapped into that frame as
    ``int(image_size · (x − x1) / (x2 − x1))`` (likewise for y). Keypoints
    outside the box land outside the frame: no box can hit them, but they
    still count as visible.

    The data set is not shipped and is never downloaded: ``data_home`` is
    the unpacked ``CUB_200_2011`` folder.

    Parameters
    ----------
    data_home : str or pathlib.Path
        Folder with ``images/``, ``images.txt``, ``image_class_labels.txt``,
        ``train_test_split.txt``, ``bounding_boxes.txt``, ``classes.txt`` and
        ``parts/parts.txt``, ``parts/part_locs.txt``.
    split : {"train", "test", "all"}, default="test"
    image_size : int, default=224
    classes : array-like of int or None, default=None
        CUB class ids (1-based, as in ``classes.txt``) to keep; ``None``
        keeps all 200. The test split of all classes takes 3.5 GB as
        float32.

    Returns
    -------
    data : sklearn.utils.Bunch
        - ``images``: float32 array (n, 3, image_size, image_size) in [0, 1];
        - ``target``: int array (n,), the class id minus 1;
        - ``part_locs``: float array (n, n_parts, 3) of (x, y, visible);
        - ``part_names``, ``target_names``: lists of str;
        - ``image_paths``: list of the images' paths.

    See Also
    --------
    make_part_objects : Synthetic images with exact part keypoints.

    References
    ----------
    .. [1] C. Wah, S. Branson, P. Welinder, P. Perona and S. Belongie, "The
       Caltech-UCSD Birds-200-2011 Dataset", Caltech CNS-TR-2011-001, 2011.
    """
    from PIL import Image

    root = Path(data_home)
    names = {int(i): name for i, name in _read_table(root / "images.txt", 2)}
    labels = {int(i): int(c) for i, c in _read_table(root / "image_class_labels.txt", 2)}
    is_train = {int(i): flag == "1" for i, flag in _read_table(root / "train_test_split.txt", 2)}
    boxes = {int(r[0]): [float(v) for v in r[1:]] for r in _read_table(root / "bounding_boxes.txt", 5)}
    class_names = {int(i): name for i, name in _read_table(root / "classes.txt", 2)}
    parts = {int(i): name for i, name in _read_table(root / "parts" / "parts.txt", 2)}
    part_ids = sorted(parts)

    keep = set(class_names) if classes is None else {int(c) for c in np.asarray(classes).ravel()}
    unknown = keep - set(class_names)
    if unknown:
        raise ValueError(f"classes {sorted(unknown)} are not in classes.txt.")
    image_ids = [
        i
        for i in sorted(names)
        if labels[i] in keep and (split == "all" or is_train[i] == (split == "train"))
    ]
    position = {image_id: row for row, image_id in enumerate(image_ids)}
    part_column = {part_id: column for column, part_id in enumerate(part_ids)}

    locs_raw = np.zeros((len(image_ids), len(part_ids), 3))
    for image_id, part_id, x, y, visible in _read_table(root / "parts" / "part_locs.txt", 5):
        row = position.get(int(image_id))
        if row is not None:
            locs_raw[row, part_column[int(part_id)]] = (float(x), float(y), float(visible))

    images = np.empty((len(image_ids), 3, image_size, image_size), dtype=np.float32)
    part_locs = np.zeros_like(locs_raw)
    for row, image_id in enumerate(image_ids):
        x, y, width, height = boxes[image_id]
        x1, y1, x2, y2 = int(x), int(y), int(x + width), int(y + height)
        with Image.open(root / "images" / names[image_id]) as image:
            crop = image.convert("RGB").crop((x1, y1, x2, y2)).resize((image_size, image_size), Image.BILINEAR)
        images[row] = np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / 255.0
        visible = locs_raw[row, :, 2] > 0
        # int() truncates towards zero, as the reference's mapping does.
        part_locs[row, :, 0] = [int(image_size * (v - x1) / (x2 - x1)) for v in locs_raw[row, :, 0]]
        part_locs[row, :, 1] = [int(image_size * (v - y1) / (y2 - y1)) for v in locs_raw[row, :, 1]]
        part_locs[row, :, 2] = visible
    return Bunch(
        images=images,
        target=np.array([labels[i] - 1 for i in image_ids], dtype=np.int64),
        part_locs=part_locs,
        part_names=[parts[p] for p in part_ids],
        target_names=[class_names[c] for c in sorted(class_names)],
        image_paths=[str(root / "images" / names[i]) for i in image_ids],
    )
