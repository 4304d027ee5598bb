"""
Local intrinsic dimension while a transformer groks
===================================================

Ruppik et al. (2025) report that, when a small transformer groks modular
arithmetic, the mean local intrinsic dimension (LID) of its representations
drops *before* its test accuracy rises. This example reproduces the
experiment at CPU scale: a one-layer transformer reads the three tokens
``a b =`` and learns ``(a + b) mod 59`` from half of the table with strong
weight decay. Every 50 steps a
:class:`~sklearn_interp.manifold.LocalIDTracker` records the mean LID of the
representation the unembedding reads (the residual stream at ``=``) on the
same 2 000 pairs, with ``n_neighbors`` fixed (the only way LIDs compare),
next to train and test accuracy.

The example reports, from the run itself, when the LID starts to fall and
when test accuracy starts to rise.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from sklearn_interp.datasets import make_modular_arithmetic
from sklearn_interp.manifold import LocalIDTracker

MODULUS, WIDTH = 59, 64
torch.manual_seed(0)
table = make_modular_arithmetic(MODULUS)
equals = torch.full((len(table.data), 1), MODULUS)  # the "=" token
tokens = torch.cat([torch.from_numpy(table.data), equals], dim=1)
target = torch.from_numpy(table.target)
order = torch.randperm(len(tokens))
n_train = len(tokens) // 2
train, test = order[:n_train], order[n_train:]
probe = order[:2000]  # a fixed sample of train and test pairs


class OneLayerTransformer(torch.nn.Module):
    """Token and position embeddings, one pre-norm attention + MLP block, an unembedding."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(MODULUS + 1, WIDTH)
        self.position = torch.nn.Parameter(0.02 * torch.randn(3, WIDTH))
        self.block = torch.nn.TransformerEncoderLayer(
            WIDTH, nhead=4, dim_feedforward=4 * WIDTH, dropout=0.0, batch_first=True, norm_first=True
        )
        self.unembed = torch.nn.Linear(WIDTH, MODULUS)

    def residual(self, rows):
        """The residual stream at the '=' position: what the unembedding reads."""
        return self.block(self.embed(tokens[rows]) + self.position)[:, -1]

    def forward(self, rows):
        return self.unembed(self.residual(rows))


model = OneLayerTransformer()
optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1.0, betas=(0.9, 0.98))


def accuracy(rows):
    return (model(rows).argmax(1) == target[rows]).float().mean().item()


# %%
# Full-batch training; the tracker records a checkpoint every 50 steps.
tracker = LocalIDTracker(n_neighbors=50, device="cpu")
for step in range(1201):
    if step % 50 == 0:
        with torch.no_grad():
            tracker.record(
                step, model.residual(probe).double(), split="probe",
                train_accuracy=accuracy(train), test_accuracy=accuracy(test),
            )
    loss = torch.nn.functional.cross_entropy(model(train), target[train])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

history = tracker.table()
steps = history["step"].to_numpy()
mean_lid = history["mean_lid"].to_numpy()
train_accuracy = history["train_accuracy"].to_numpy()
test_accuracy = history["test_accuracy"].to_numpy()

# %%
# When does each curve move? The LID "starts to fall" at the first
# checkpoint after its peak where it has lost 10 % of its total fall; test
# accuracy "starts to rise" when it first passes the plateau it reached while
# the model memorised (its value when train accuracy first reaches 99 %) by
# 10 points. Addition is commutative, so about half the test pairs have their
# mirror image in the training half: that is the plateau.
peak = int(np.argmax(mean_lid))
fall = mean_lid[peak] - mean_lid[peak:].min()
lid_onset = int(steps[peak + np.argmax(mean_lid[peak:] <= mean_lid[peak] - 0.1 * fall)])
memorised_at = int(np.argmax(train_accuracy >= 0.99))
memorised = int(steps[memorised_at])
plateau = test_accuracy[memorised_at]
test_onset = int(steps[memorised_at + np.argmax(test_accuracy[memorised_at:] >= plateau + 0.1)])
print(f"train accuracy reaches 99 % at step {memorised}, test accuracy is then {plateau:.2f}")
print(f"mean LID peaks at step {steps[peak]} ({mean_lid[peak]:.2f}) and starts to fall at step {lid_onset}")
print(f"test accuracy passes {plateau + 0.1:.2f} at step {test_onset} and ends at {test_accuracy[-1]:.3f}")
verdict = "precedes" if lid_onset < test_onset else "does not precede"
print(f"the drop in mean LID {verdict} the rise in test accuracy ({test_onset - lid_onset:+d} steps)")
print(tracker.lag_correlation("test_accuracy", lags=(0, 1, 2)).round(2).to_string(index=False))

# %%
figure, accuracy_axis = plt.subplots(figsize=(7, 4.2))
accuracy_axis.plot(steps, train_accuracy, color="tab:blue", label="train accuracy")
accuracy_axis.plot(steps, test_accuracy, color="tab:orange", label="test accuracy")
accuracy_axis.set(xlabel="training step", ylabel="accuracy", ylim=(-0.02, 1.02))
lid_axis = accuracy_axis.twinx()
lid_axis.plot(steps, mean_lid, color="black", marker=".", label="mean local ID (L = 50)")
lid_axis.set_ylabel("mean local ID at '='")
for onset, style in ((lid_onset, ":"), (test_onset, "--")):
    accuracy_axis.axvline(onset, color="grey", linestyle=style)
handles = accuracy_axis.get_legend_handles_labels()[0] + lid_axis.get_legend_handles_labels()[0]
figure.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
accuracy_axis.set_title(
    f"(a + b) mod {MODULUS}, one-layer transformer: LID starts to fall at step {lid_onset} (dotted),\n"
    f"test accuracy rises at {test_onset} (dashed)",
    fontsize=10,
)
figure.tight_layout(rect=(0, 0.06, 1, 1))
plt.show()
