"""Split speed on the full ISIC 2019 CSVs (25,331 rows): dermpipe's vectorised stratified group k-fold against
scikit-learn's StratifiedGroupKFold (the same greedy algorithm), measured side by side in one run.

    .venv/bin/python benchmarks/split_speed.py
"""

import time
from pathlib import Path

import numpy as np

from dermpipe.data.merge import merge_tables, read_isic_csv
from dermpipe.data.split import leakage_groups, split_table, stratified_group_folds

CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isic2019-csv"


def main() -> None:
    from sklearn.model_selection import StratifiedGroupKFold

    truth = read_isic_csv(CSV / "ISIC_2019_Training_GroundTruth.csv")
    meta = read_isic_csv(CSV / "ISIC_2019_Training_Metadata.csv")
    table = merge_tables(truth, meta, {i: f"img/{i}.jpg" for i in truth["image"]}).table
    labels, groups = table["label"].to_numpy(), leakage_groups(table)

    start = time.perf_counter()
    ours = stratified_group_folds(labels, groups, 10, seed=42)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    splitter = StratifiedGroupKFold(n_splits=10, shuffle=True, random_state=42)
    theirs = np.empty(len(labels), int)
    for k, (_, test) in enumerate(splitter.split(labels, labels, groups)):
        theirs[test] = k
    t_theirs = time.perf_counter() - start
    start = time.perf_counter()
    split_table(table, test_size=0.1, val_size=0.1, seed=42, method="stratified")  # the k-fold split it times
    t_split = time.perf_counter() - start

    overall = table["label"].value_counts(normalize=True)

    def worst(folds):
        return 100 * max((table["label"][folds == k].value_counts(normalize=True) - overall).abs().max()
                         for k in range(10))

    print(f"rows {len(table)}, groups {len(np.unique(groups))}, 10 folds")
    print(f"dermpipe stratified_group_folds   {t_ours:8.2f} s   worst class-share deviation {worst(ours):.3f} pt")
    print(f"sklearn StratifiedGroupKFold      {t_theirs:8.2f} s   worst class-share deviation {worst(theirs):.3f} pt")
    print(f"speed-up                          {t_theirs / t_ours:8.1f} x")
    print(f"full train/val/test split_table   {t_split:8.2f} s   (issue budget: 10 s)")


if __name__ == "__main__":
    main()
