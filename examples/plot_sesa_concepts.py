"""
Ranking explained by concepts, across a vocabulary gap
======================================================

:class:`~sklearn_interp.ranking.SESARanker` scores a (query, item) pair as
a sum over named concepts. We plant 12 concepts in queries and items whose
words differ (queries use their own words for every concept,
``query_vocab="disjoint"``), so matching words cannot work, and compare
tf-idf cosine, the same network without concept supervision, and SESA.
Then we look at the concepts that explain one relevant pair.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import roc_auc_score

from sklearn_interp.datasets import make_concept_ranking
from sklearn_interp.ranking import SESARanker, grouped_ndcg_score

data = make_concept_ranking(n_queries=150, n_concepts=12, query_vocab="disjoint", random_state=0)
frame = data.frame
X, y = frame[["qid", "query", "item"]], data.target
train = (frame["qid"] < 120).to_numpy()
test = ~train

vectorizer = TfidfVectorizer().fit(frame["item"][train])
tfidf = np.asarray(
    vectorizer.transform(frame["query"][test]).multiply(vectorizer.transform(frame["item"][test])).sum(axis=1)
).ravel()
print(f"tf-idf cosine NDCG@10: {grouped_ndcg_score(y[test], tfidf, frame['qid'][test]):.3f}")

settings = dict(encoder="bow", concepts=data.concept_names, max_epochs=20, random_state=0, device="cpu")
latent = SESARanker(concept_weight=0.0, **settings).fit(X[train], y[train])
sesa = SESARanker(**settings).fit(
    X[train], y[train], item_concepts=data.item_concepts[train], query_concepts=data.query_concepts[train]
)
for name, ranker in [("latent (no concept loss)", latent), ("SESA", sesa)]:
    auc = roc_auc_score(data.item_concepts[test].ravel(), ranker.encode(frame["item"][test].tolist()).ravel())
    print(f"{name}: NDCG@10 {ranker.score(X[test], y[test]):.3f}, concept AUC {auc:.3f}")

# %%
# The contributions of one relevant test pair add up to its score. The
# planted concepts the two texts share are marked.
row = int(np.flatnonzero(test & (y == y[test].max()))[0])
contributions = sesa.transform(X.iloc[[row]])[0]
shared = data.query_concepts[row] & data.item_concepts[row]
order = np.argsort(contributions)
figure, ax = plt.subplots(figsize=(6, 3.5))
colours = ["tab:red" if shared[k] else "tab:grey" for k in order]
ax.barh(data.concept_names[order], contributions[order], color=colours)
ax.set_xlabel(f"contribution (sum = score {contributions.sum():.2f})")
ax.set_title("red: concepts query and item truly share", fontsize=9)
figure.tight_layout()
plt.show()
