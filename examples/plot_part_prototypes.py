"""
Where do the prototypes land? Part consistency of a prototype network
=====================================================================

A part-prototype network explains a decision by the image region where
each prototype's activation peaks. Huang et al. (2023) ask whether that
region is the same object part across the images of a class (consistency)
and whether it survives small input noise (stability). We train a small
:class:`~sklearn_interp.prototypes.PartPrototypeClassifier` on synthetic
objects whose part keypoints are exact, score it with
:class:`~sklearn_interp.evaluation.ConsistencyScorer`, and draw each
prototype's box on a few test images.
"""

import matplotlib.pyplot as plt
from sklearn.frozen import FrozenEstimator

from sklearn_interp.datasets import PART_OBJECT_PARTS, make_part_objects
from sklearn_interp.evaluation import ConsistencyScorer
from sklearn_interp.prototypes import PartPrototypeClassifier

X, y, part_locs = make_part_objects(800, image_size=32, random_state=0)
X_test, y_test, locs_test = make_part_objects(200, image_size=32, random_state=1)

# A small network for the gallery (a 4-px cell on 32-px images); the benchmark
# trains the default one on 64-px images.
clf = PartPrototypeClassifier(channels=(8, 16, 32), prototypes_per_class=3, epochs=12, random_state=0, device="cpu")
clf.fit(X, y)

scorer = ConsistencyScorer(FrozenEstimator(clf), part_names=PART_OBJECT_PARTS, random_state=0, device="cpu")
scorer.fit(X, y)
table = scorer.evaluate(X_test, y_test, locs_test)
print(scorer.summary_[["accuracy", "consistency", "stability", "half_size_px"]])

# %%
# The per-prototype table: the part each prototype covers most often among
# the images of its class, how often, and its stability.
print(table[["prototype", "class", "best_part_name", "best_part_freq", "consistent", "stable_frac"]].head(9))

# %%
# Rows are prototypes, columns test images of the prototype's class; the
# yellow square is the activated box, white dots the visible parts (filled
# when inside the box).
axes = scorer.plot(X_test, y_test, locs_test, n_prototypes=4, n_images=5)
axes[0, 0].figure.suptitle("Activated boxes of four prototypes")
plt.show()
