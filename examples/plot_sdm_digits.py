"""
=====================================================================
Selective prediction that holds up out of distribution (SDM, digits)
=====================================================================

:class:`~sklearn_interp.calibration.SDMCalibrator` learns an exemplar space
and a linear head on scikit-learn's digits, then abstains wherever the
similarity ``q``, the distance ``d`` and the magnitude of a prediction do
not put it inside the high-reliability region found on the calibration
split. We compare it with thresholding the softmax at the same target
accuracy, in distribution, on digits moved one pixel to the right, and on
digits whose pixels are permuted (far out of distribution).
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sklearn_interp.calibration import SDMCalibrator, selective_report
from sklearn_interp.datasets import permute_features, translate_images

X, y = load_digits(return_X_y=True)
X_fit, X_test, y_fit, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
sdm = SDMCalibrator(n_repeats=2, max_epochs=30, learning_rate=3e-3, device="cpu", random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    sdm.fit(X_fit, y_fit)
print(f"region found: {sdm.hr_found_}, q'_min = {sdm.q_prime_min_:.1f}, thresholds = {sdm.thresholds_.round(3)}")

# %%
# Admitted fraction and accuracy among admitted rows
# --------------------------------------------------
# ``predict_selective`` returns ``-1`` where the estimator abstains. The
# softmax rule admits whatever the network is confident about, including
# most far-OOD rows, at an accuracy near chance.

test_sets = {
    "in distribution": X_test,
    "shifted 1 px": translate_images(X_test, (8, 8)),
    "far-OOD": permute_features(X_test, random_state=0),
}
for name, X_set in test_sets.items():
    selective = sdm.predict_selective(X_set)
    prediction = sdm.predict(X_set)
    softmax_admitted = sdm.predict_proba(X_set, kind="softmax").max(axis=1) >= sdm.alpha
    sdm_admitted = selective != -1
    sdm_accuracy = np.mean(selective[sdm_admitted] == y_test[sdm_admitted]) if sdm_admitted.any() else float("nan")
    print(
        f"{name:>16}: SDM admits {sdm_admitted.mean():.0%} at accuracy {sdm_accuracy:.2f}; "
        f"softmax >= {sdm.alpha} admits {softmax_admitted.mean():.0%} at accuracy "
        f"{np.mean(prediction[softmax_admitted] == y_test[softmax_admitted]):.2f}"
    )

print(selective_report(y_test, sdm.predict_selective(X_test)).round(3).to_string())

# %%
# Explanation by exemplar
# -----------------------
# Every prediction comes with the training digit nearest to it in the
# learned exemplar space, and the signals behind the decision.

details = sdm.predict_details(X_test[:6])
figure, axes = plt.subplots(2, 6, figsize=(9, 3.4))
for column, row in enumerate(details.itertuples()):
    axes[0, column].imshow(X_test[column].reshape(8, 8), cmap="gray_r")
    axes[0, column].set_title(f"pred {row.prediction}\nq={row.q:.0f} d={row.d:.2f}\n{'admitted' if row.admitted else 'rejected'}", fontsize=7)
    axes[1, column].imshow(X_fit[row.nearest_support_index].reshape(8, 8), cmap="gray_r")
    axes[1, column].set_title(f"nearest: {y_fit[row.nearest_support_index]}", fontsize=7)
for axis in axes.ravel():
    axis.set_axis_off()
figure.tight_layout()
plt.show()
