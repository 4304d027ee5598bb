"""
=======================================================================
Choosing a dictionary's size: bi-cross-validation and the one-SE rule
=======================================================================

A search over :class:`~sklearn_interp.decomposition.SNMFDecomposer`'s
``n_components`` ranked by held-out R² always picks the largest candidate:
``transform`` fits every held-out row's codes to that row, so extra
components fit its noise. Here the data have a planted rank of 6 (600 rows,
40 features, noise 0.3). :func:`~sklearn_interp.model_selection.bicrossval_scorer`
fits each held-out row's codes to half of its features and scores the
other half, which noise cannot help predict, and
:func:`~sklearn_interp.model_selection.simplest_within_one_se` takes the
smallest rank whose score is within one standard error of the best.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV

from sklearn_interp.decomposition import SNMFDecomposer
from sklearn_interp.model_selection import dictionary_scoring, simplest_within_one_se
from sklearn_interp.plotting import plot_one_se

rng = np.random.default_rng(0)
X = rng.exponential(1.0, (600, 6)) @ rng.standard_normal((6, 40)) + 0.3 * rng.standard_normal((600, 40))

search = GridSearchCV(
    SNMFDecomposer(sparsity=None, random_state=0, device="cpu"),
    {"n_components": [2, 4, 6, 10, 16]},
    scoring=dictionary_scoring(random_state=0),
    refit=simplest_within_one_se("n_components", scoring="bicv_r2"),
    cv=5,
).fit(X)
print("held-out R²:          ", np.round(search.cv_results_["mean_test_r2"], 3))
print("bi-cross-validated R²:", np.round(search.cv_results_["mean_test_bicv_r2"], 3))
print("chosen:", search.best_params_)

fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=False)
plot_one_se(search.cv_results_, "n_components", scoring="r2", ax=axes[0], label="held-out R²")
axes[0].set_title("held-out R² rises past the truth")
plot_one_se(search.cv_results_, "n_components", scoring="bicv_r2", ax=axes[1], label="bi-cross-validated R²")
axes[1].set_title("bi-cross-validated R² peaks at rank 6")
fig.tight_layout()
plt.show()
