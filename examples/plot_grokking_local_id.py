"""
Local intrinsic dimension during grokking
=========================================

Ruppik et al. (2025) report that, when a small network groks modular
arithmetic, the mean local intrinsic dimension (LID) of its hidden
representations drops *before* its test accuracy rises. This example
reproduces the experiment at CPU scale: a one-hidden-layer network learns
``(a + b) mod 97`` from 40 % of the table with strong weight decay; at every
checkpoint :class:`~sklearn_interp.manifold.LocalIDEstimator` measures the
mean LID of the hidden layer on the same 2 000 input pairs (``n_neighbors``
and the sample fixed, the only way LIDs are comparable).

The example reports, from the run itself, when the LID starts to fall and
when test accuracy starts to rise.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from sklearn_interp.datasets import make_modular_arithmetic
from sklearn_interp.manifold import LocalIDEstimator

torch.manual_seed(0)
table = make_modular_arithmetic(97)
pairs, target = torch.from_numpy(table.data), torch.from_numpy(table.target)
order = torch.randperm(len(pairs))
n_train = int(0.4 * len(pairs))
train, test = order[:n_train], order[n_train:]
probe = order[:2000]  # a fixed sample of train and test pairs

embedding = torch.nn.Embedding(97, 128)
hidden_layer = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU())
readout = torch.nn.Linear(256, 97)
parameters = [*embedding.parameters(), *hidden_layer.parameters(), *readout.parameters()]
optimizer = torch.optim.AdamW(parameters, lr=3e-3, weight_decay=1.0, betas=(0.9, 0.98))


def hidden(rows):
    return hidden_layer(embedding(pairs[rows]).flatten(1))


def accuracy(rows):
    return (readout(hidden(rows)).argmax(1) == target[rows]).float().mean().item()


# %%
# Full-batch training, with a checkpoint every 50 steps.
steps, train_accuracy, test_accuracy, mean_lid = [], [], [], []
lid = LocalIDEstimator(n_neighbors=50, device="cpu")
for step in range(2001):
    if step % 50 == 0:
        with torch.no_grad():
            steps.append(step)
            train_accuracy.append(accuracy(train))
            test_accuracy.append(accuracy(test))
            mean_lid.append(lid.fit(hidden(probe).double()).mean_local_id_)
    loss = torch.nn.functional.cross_entropy(readout(hidden(train)), target[train])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

steps, test_accuracy, mean_lid = np.array(steps), np.array(test_accuracy), np.array(mean_lid)

# %%
# When does each curve move? The LID "starts to fall" at the first
# checkpoint after its peak where it has lost 10 % of its total fall; test
# accuracy "starts to rise" when it first reaches 10 % (chance is 1 %).
peak = int(np.argmax(mean_lid))
fall = mean_lid[peak] - mean_lid[peak:].min()
lid_onset = int(steps[peak + np.argmax(mean_lid[peak:] <= mean_lid[peak] - 0.1 * fall)])
test_onset = int(steps[np.argmax(test_accuracy >= 0.1)])
memorised = int(steps[np.argmax(np.array(train_accuracy) >= 0.99)])
print(f"train accuracy reaches 99 % at step {memorised}")
print(f"mean LID peaks at step {steps[peak]} ({mean_lid[peak]:.2f}) and starts to fall at step {lid_onset}")
print(f"test accuracy reaches 10 % at step {test_onset} and ends at {test_accuracy[-1]:.3f}")
verdict = "precedes" if lid_onset < test_onset else "does not precede"
print(f"the drop in mean LID {verdict} the rise in test accuracy ({test_onset - lid_onset:+d} steps)")

# %%
figure, accuracy_axis = plt.subplots(figsize=(7, 3.8))
accuracy_axis.plot(steps, train_accuracy, color="tab:blue", label="train accuracy")
accuracy_axis.plot(steps, test_accuracy, color="tab:orange", label="test accuracy")
accuracy_axis.set(xlabel="training step", ylabel="accuracy", ylim=(-0.02, 1.02))
lid_axis = accuracy_axis.twinx()
lid_axis.plot(steps, mean_lid, color="black", marker=".", label="mean local ID (L = 50)")
lid_axis.set_ylabel("mean local ID of the hidden layer")
for onset, style in ((lid_onset, ":"), (test_onset, "--")):
    accuracy_axis.axvline(onset, color="grey", linestyle=style)
handles = accuracy_axis.get_legend_handles_labels()[0] + lid_axis.get_legend_handles_labels()[0]
accuracy_axis.legend(handles=handles, loc="center right", fontsize=8)
accuracy_axis.set_title(
    f"(a + b) mod 97: LID starts to fall at step {lid_onset} (dotted), "
    f"test accuracy rises at {test_onset} (dashed)",
    fontsize=10,
)
figure.tight_layout()
plt.show()
