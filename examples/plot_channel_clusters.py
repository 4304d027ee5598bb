"""
Channel clusters of a multichannel forecaster, and forecasts of unseen channels
===============================================================================

:class:`~sklearn_interp.forecasting.ChannelClusterForecaster` gives every
channel of a lookback window a soft assignment to learned cluster
prototypes and forecasts it with the cluster heads mixed by that
assignment. We plant three groups of channels driven by a sine, a square
wave and a random walk (:func:`~sklearn_interp.datasets.make_channel_groups`),
compare the learned clusters with the planted groups, ask the cluster
report whether it found structure (and check that it finds none in
independent channels), and forecast channels of a new series the model has
never seen.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import adjusted_rand_score

from sklearn_interp.datasets import make_channel_groups
from sklearn_interp.forecasting import ChannelClusterForecaster, make_windows

series, groups = make_channel_groups(800, 12, 3, drivers="mixed", random_state=0)
series = (series - series[:600].mean(0)) / series[:600].std(0)
X, y = make_windows(series[:600], lookback=48, horizon=12)
X_test, y_test = make_windows(series[600 - 48 :], lookback=48, horizon=12)

settings = dict(decomposition_kernel=13, lr_schedule="constant", max_epochs=30, random_state=0, device="cpu")
model = ChannelClusterForecaster(n_clusters=3, **settings).fit(X, y)
base = ChannelClusterForecaster(n_clusters=1, **settings).fit(X, y)
print(f"test MSE: CCM {np.mean((model.predict(X_test) - y_test) ** 2):.3f}, "
      f"one-cluster base {np.mean((base.predict(X_test) - y_test) ** 2):.3f}")
print(f"adjusted Rand index of the learned clusters against the planted groups: "
      f"{adjusted_rand_score(groups, model.channel_labels_):.2f}")
print(model.cluster_report())

# %%
# The same estimator on twelve independent white-noise channels: nothing
# groups them, and the report says so instead of naming clusters.
noise = np.random.default_rng(0).normal(size=(800, 12))
X_noise, y_noise = make_windows(noise, lookback=48, horizon=12)
print(ChannelClusterForecaster(n_clusters=3, **settings).fit(X_noise, y_noise).cluster_report().message)

# %%
# The channels' mean similarity over the training windows, grouped by the
# learned cluster (in brackets). Planted group g holds channels g, g + 3, ...
# When the report finds no structure the plot keeps the channels' order
# and says so in its title instead of drawing a grouping.
model.plot_similarity(channel_names=[f"ch{i} (g{g})" for i, g in enumerate(groups)])
plt.show()

# %%
# Zero-shot: a new series with four channels drawn from the same kind of
# groups. Nothing is retrained; the model assigns each new channel to its
# prototypes and mixes the cluster heads.
new_series, new_groups = make_channel_groups(200, 4, 3, drivers="mixed", random_state=7)
new_series = (new_series - new_series.mean(0)) / new_series.std(0)
X_new, y_new = make_windows(new_series, lookback=48, horizon=12)
forecast = model.predict(X_new)
print(f"unseen channels: CCM MSE {np.mean((forecast - y_new) ** 2):.3f}, "
      f"last value {np.mean((X_new[:, -1:] - y_new) ** 2):.3f}")

figure, axes = plt.subplots(1, 4, figsize=(12, 2.6), sharey=True)
window = len(X_new) - 1
for channel, ax in enumerate(axes):
    ax.plot(range(48), X_new[window, :, channel], color="black", linewidth=1)
    ax.plot(range(48, 60), y_new[window, :, channel], color="black", linestyle=":")
    ax.plot(range(48, 60), forecast[window, :, channel], color="tab:red")
    ax.set_title(f"new channel {channel} (group {new_groups[channel]})", fontsize=9)
figure.tight_layout()
plt.show()
