"""Measure the figures behind the floors of the slow test in tests/test_sesa.py.

    python benchmarks/calibrate_sesa_floors.py [--seeds 0 1 2]

Runs the test's own helper on several seeds: SESA (bow) fitted on 160
synthetic queries, scored on 40 others: NDCG@10, the share of relevant pairs
whose top contribution is a concept both sides truly share, and the items'
concept detection AUC. Also the concept AUC of a small bow ranker (60 queries)
with and without concept labels, the figures behind
test_supervision_makes_the_axes_detect_their_concepts, and the concept AUC
of an untrained bow ranker whose concepts were pretrained on the concept
texts or only encoded by the untrained encoder, the figures behind
test_pretraining_on_concept_texts_carries_their_knowledge, and the README's
stdlib-docs ranker (test_docs_showcase_ranks_and_explains_by_the_right_modules).
The test floors sit
below (and the ceiling above) every seed measured here.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_sesa import (  # noqa: E402
    _docs_showcase,
    _faithfulness_experiment,
    _supervision_aucs,
    _untrained_concept_auc,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as under pytest-xdist
    for seed in args.seeds:
        ndcg, agreement, auc = _faithfulness_experiment(seed)
        print(f"seed {seed}: NDCG@10 {ndcg:.3f}; top concept truly shared {agreement:.3f}; concept AUC {auc:.4f}", flush=True)
        with_labels, without = _supervision_aucs(seed)
        print(f"seed {seed}: small ranker concept AUC {with_labels:.4f} with labels, {without:.4f} without", flush=True)
        pretrained, encoded = _untrained_concept_auc("pretrain", seed), _untrained_concept_auc("encode", seed)
        print(f"seed {seed}: untrained concept AUC {pretrained:.4f} pretrained, {encoded:.4f} encoded", flush=True)
        ndcg, tfidf, esa, right = _docs_showcase(seed)
        print(
            f"seed {seed}: docs showcase NDCG@10 {ndcg:.3f} (tf-idf {tfidf:.3f}, ESA {esa:.3f}); top candidate "
            f"explained by the query's module {right:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
