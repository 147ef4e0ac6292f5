"""Hash-based splits that stay put: adding data never moves an existing group to another split.

TFX's hash-based split, per leakage group: every group gets a key (its smallest lesion_id, else its smallest
patient_id, else its smallest content hash, else its image name), and sha256(seed, key) mapped to [0, 1) decides
its split: below test_size test, then val_size of the rest val, else train. A group's split depends on its own key
and the seed only, never on the other rows, so new images (new lesions, or new images of a known lesion) leave
every existing group where it was. A key changes only when new data merges two groups (an image duplicating images
of two lesions): the merged group must then sit in one split, and it takes the smaller key's split.
Stratification is what hashing allows: each class's share in a split deviates from the overall share by sampling
noise only (about sqrt(p(1-p)/n)); the split report and metrics give the deviation.
"""

import hashlib

import numpy as np
import pandas as pd

# Key kinds in priority order: a group is named by its most stable identity.
KEY_COLUMNS = (("lesion_id", "lesion"), ("patient_id", "patient"), ("sha256", "sha256"), ("image", "image"))


def _present(values: pd.Series) -> pd.Series:
    return values.notna() & (values.astype(str).str.strip() != "")


def row_keys(table: pd.DataFrame) -> pd.DataFrame:
    """Every identity a row has, one column per kind ("lesion:L1", "sha256:ab..", ...; None where absent)."""
    keys = pd.DataFrame(index=table.index)
    for column, kind in KEY_COLUMNS:
        if column in table:
            keys[kind] = (kind + ":" + table[column].astype(str)).where(_present(table[column]), None)
    return keys


def group_keys(table: pd.DataFrame, groups: np.ndarray) -> np.ndarray:
    """The key of each row's leakage group (`groups` from leakage_groups): the smallest key of the group's most
    stable kind. Rows of one group share the key; lesion-less images of one patient share it too."""
    keys = row_keys(table)
    result = pd.Series([None] * len(table), index=table.index, dtype=object)
    group_of = pd.Series(groups, index=table.index)
    for kind in keys.columns:
        present = keys[kind].notna()
        smallest = keys[kind][present].groupby(groups[present.to_numpy()]).min()
        result = result.where(result.notna(), group_of.map(smallest))
    if result.isna().any():
        raise ValueError(f"split: {int(result.isna().sum())} rows have no lesion_id, patient_id, sha256 or image "
                         f"name to group by; check the merged table's columns")
    return result.to_numpy(dtype=object)


def unit_hash(seed: int, salt: str, keys: np.ndarray) -> np.ndarray:
    """sha256(seed/salt/key) as a number in [0, 1) per key: the same on every machine and Python version."""
    out = np.empty(len(keys))
    for i, key in enumerate(keys):
        digest = hashlib.sha256(f"{seed}/{salt}/{key}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    return out


def hash_buckets(keys: np.ndarray, *, test_size: float, val_size: float, seed: int,
                 forced_test: np.ndarray | None = None) -> np.ndarray:
    """"train" | "val" | "test" per row from its group key; `forced_test` rows (benchmark groups) go to test."""
    unique, inverse = np.unique(keys.astype(str), return_inverse=True)
    u = unit_hash(seed, "split", unique)[inverse]
    bucket = np.where(u < test_size, "test", np.where(u < test_size + val_size * (1 - test_size), "val", "train"))
    if forced_test is not None:
        bucket = np.where(forced_test, "test", bucket)
    return bucket.astype(object)


def hash_folds(keys: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Cross-validation fold (0..folds-1) per row from its group key: stable too, independent of the split hash."""
    unique, inverse = np.unique(keys.astype(str), return_inverse=True)
    return np.minimum((unit_hash(seed, "fold", unique) * folds).astype(np.int64), folds - 1)[inverse]


def in_benchmark(table: pd.DataFrame, keys: np.ndarray, groups: np.ndarray, benchmark: set[str]) -> np.ndarray:
    """Rows whose group holds any identity the benchmark lists (its group key, or any member's lesion, patient or
    content key): a benchmark group stays in test even when new data merged it into a group with another key."""
    if not benchmark:
        return np.zeros(len(table), dtype=bool)
    hit = pd.Series(np.isin(keys.astype(str), list(benchmark)), index=table.index)
    identities = row_keys(table)
    for column in identities.columns:
        hit |= identities[column].isin(benchmark)
    return hit.groupby(groups).transform("any").to_numpy(dtype=bool)
