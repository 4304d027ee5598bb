"""
Sparse neuron groups in MiniLM's MLP
====================================

Decompose the MLP activations of block 3 of all-MiniLM-L6-v2, over sentences
from Python's own docstrings, into 32 features that each use 1 % of the
1536 neurons, and show the tokens that express some features most.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.pipeline import make_pipeline

from sklearn_interp.activations import TransformerActivations
from sklearn_interp.datasets import load_python_docs
from sklearn_interp.decomposition import SNMFDecomposer
from sklearn_interp.plotting import SNMFFeatureDisplay

texts = load_python_docs(n_sentences=300).data
pipe = make_pipeline(
    TransformerActivations(layer=3, site="mlp", device="cpu"),
    SNMFDecomposer(32, sparsity=0.01, max_iter=80, random_state=0, device="cpu"),
)
codes = pipe.fit_transform(texts)
acts, snmf = pipe[0], pipe[-1]
X = acts.transform(texts)
print(f"{X.shape[0]} tokens; R² = {snmf.score(X):.3f}; "
      f"{np.count_nonzero(snmf.components_, axis=1).max()} neurons per feature")

# %%
# Each panel is one feature: its eight most strongly coded tokens.
display = SNMFFeatureDisplay.from_estimator(snmf, acts.tokens_, n_tokens=8, n_cols=2)
plt.show()

# %%
# The loss falls fast, then winner-take-all sparsity makes it wander a
# little; the estimator returns the best iterate.
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(snmf.loss_curve_)
ax.axvline(snmf.best_iter_, color="grey", linestyle=":")
ax.set(xlabel="iteration", ylabel="squared reconstruction error")
plt.show()
