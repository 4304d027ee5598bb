"""
Matching pursuit against TopK: adaptive sparsity and hierarchies
================================================================

Train a matching-pursuit sparse autoencoder and a TopK one, with the same
atoms, bias, loss and loop, on the block-3 outputs of all-MiniLM-L6-v2 over
sentences from Python's own docstrings; then change the number of encoder
steps after training. Finally, plant a hierarchy of correlated features and
see which encoder recovers it.
"""

import matplotlib.pyplot as plt
import numpy as np

from sklearn_interp.activations import TransformerActivations
from sklearn_interp.datasets import load_python_docs, make_hierarchical_features
from sklearn_interp.decomposition import MatchingPursuitSAE, TopKSAE

texts = load_python_docs(n_sentences=300).data
extractor = TransformerActivations(layer=3, site="residual", device="cpu").fit()
X = extractor.transform(texts)
params = {"n_components": 256, "k": 8, "max_epochs": 3, "random_state": 0, "device": "cpu"}
mp = MatchingPursuitSAE(**params).fit(X)
topk = TopKSAE(**params).fit(X)
print(f"{X.shape[0]} tokens × {X.shape[1]}; R² at k=8: MP {mp.score(X):.3f}, TopK {topk.score(X):.3f}")

# %%
# Both were trained with 8 atoms per token. Matching pursuit keeps lowering
# the residual with every further step (each step explains part of what is
# left); TopK adds the next atoms' correlations with the *input*, which
# double-count what the first atoms already explain.
steps = [1, 2, 4, 8, 16, 32, 64]
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(steps, [mp.score(X, k=k) for k in steps], "o-", label="MatchingPursuitSAE")
ax.plot(steps, [topk.score(X, k=k) for k in steps], "s--", label="TopKSAE")
ax.axvline(8, color="grey", linestyle=":", label="k in training")
ax.set(xscale="log", xlabel="atoms per token at inference (k)", ylabel="R²", title="Adaptive sparsity")
ax.set_xticks(steps, [str(k) for k in steps])
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
# The pursuit's path is its hierarchy: the first atom a token picks, then
# what explains the rest. The most frequent first atoms and their tokens:
indices, values = mp.transform_path(X, k=3)
first, counts = np.unique(indices[:, 0], return_counts=True)
for atom in first[np.argsort(-counts)][:5]:
    rows = np.flatnonzero(indices[:, 0] == atom)
    top = rows[np.argsort(-values[rows, 0])][:8]
    print(f"atom {atom:3d} first for {len(rows):4d} tokens: {' '.join(extractor.tokens_[top])}")

# %%
# A planted hierarchy: 8 parents, each with 3 children whose atoms have
# cosine 0.8 with the parent's; every row holds two concepts, each either a
# parent or one of its children. With k = 2, matching pursuit recovers
# parents and children; TopK cannot use a parent next to its correlated
# children and gives the parents up.
data = make_hierarchical_features(4000, parent_child_cosine=0.8, random_state=0)
hierarchy = {"n_components": 32, "k": 2, "max_epochs": 20, "batch_size": 128, "learning_rate": 3e-3}
fig, ax = plt.subplots(figsize=(5, 3.2))
for offset, estimator in ((-0.2, MatchingPursuitSAE), (0.2, TopKSAE)):
    sae = estimator(**hierarchy, random_state=0, device="cpu").fit(data.data)
    learned = sae.components_ / np.linalg.norm(sae.components_, axis=1, keepdims=True)
    best = np.abs(data.dictionary @ learned.T).max(axis=1)
    means = [best[data.is_parent].mean(), best[~data.is_parent].mean()]
    ax.bar(np.arange(2) + offset, means, width=0.4, label=f"{estimator.__name__} (R² {sae.score(data.data):.2f})")
ax.set_xticks([0, 1], ["parents", "children"])
ax.set(ylim=(0.5, 1.0), ylabel="mean best cosine to planted atoms", title="Recovering a hierarchy")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()
